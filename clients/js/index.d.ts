// Types of @pushgate/client (hand-written; src/ is plain JavaScript).

/** Where the client runs: detected, or given in ClientOptions.platform. */
export type Platform = 'wx' | 'uni' | 'my' | 'tt' | 'browser' | 'node';

/** A transport: one graphql-transport-ws socket, SSE (GET /events), long-polling (GET /poll). */
export type Transport = 'ws' | 'sse' | 'poll';

/** A message as the app receives it. */
export interface Message<T = unknown> {
  channel: string;
  /** The message's offset in its channel, in decimal: contiguous, increasing. */
  id: string;
  /** Present only when the message was sent with one. */
  event?: string;
  data: T;
  /** RFC 3339 with milliseconds, UTC. */
  createdAt: string;
  /**
   * Resumes right after this message (over long-polling only the last
   * message of an answer carries it). The client keeps it for you.
   */
  cursor?: string;
}

/** Messages were lost to retention or a store reset: refetch the channel's state. */
export interface Reset {
  channel: string;
  /** epoch_changed, expired or unknown_position. */
  reason: string;
  cursor: string;
}

/** An error of the server or the client, with a stable code. */
export interface PushgateError extends Error {
  name: 'PushgateError';
  /**
   * The server's extensions.code or HTTP error code (UNAUTHENTICATED,
   * FORBIDDEN, BAD_USER_INPUT, RATE_LIMITED, UNAVAILABLE, ...), or the
   * client's: NETWORK, DISCONNECTED, NO_TRANSPORT, UNSUPPORTED, HTTP_<status>.
   */
  code: string;
  /** The HTTP status, for errors of /events, /poll and /graphql. */
  status?: number;
  /** The GraphQL errors, for errors the server gave as GraphQL errors. */
  errors?: Array<{ message: string; extensions?: Record<string, unknown> }>;
  /** The transport that failed, for connection errors. */
  transport?: Transport;
}

/** A store for cursors: `get` may return a Promise (an async store). */
export interface CursorStore {
  get(key: string): string | null | undefined | Promise<string | null | undefined>;
  set(key: string, value: string): void | Promise<void>;
}

export interface ClientOptions {
  /** The server: https://push.example.com (or its ws(s):// or /graphql URL). */
  url: string;
  /** A subscriber token (JWT) or an API key; omit for anonymous reading. */
  token?: string;
  /** Returns a fresh token: called at start and whenever the server says the token expired. */
  getToken?: () => string | Promise<string>;
  /** Detected when omitted. */
  platform?: Platform;
  /**
   * The mini-program API object, when it is not the platform's global
   * (e.g. Taro with platform 'wx').
   */
  api?: unknown;
  /** In order of preference; default ['ws', 'sse', 'poll']. */
  transports?: Transport[];
  /**
   * Where cursors survive an app restart: true (the platform's storage:
   * wx.setStorageSync..., localStorage), localStorage, wx (or uni, my, tt),
   * or any {get, set}. Default: none (cursors live as long as the client).
   */
  storage?: boolean | CursorStore | { getItem(k: string): string | null; setItem(k: string, v: string): void } | object;
  /** A WebSocket class (W3C interface), for Node < 22: `import WebSocket from 'ws'`. */
  WebSocket?: unknown;
  /** An EventSource class, where the runtime has none globally. */
  EventSource?: unknown;
  /** A fetch function, where the runtime has none globally. */
  fetch?: unknown;
  /** Reconnect delays: exponential from min to max (ms), with jitter. Default {min: 500, max: 15000}. */
  reconnect?: { min?: number; max?: number };
  /** Client ping interval on WebSocket (ms, default 15000); a socket silent for 2.5 intervals is dropped. */
  keepAlive?: number;
  /**
   * A chunked or fetched SSE stream silent this long (ms, default 45000:
   * three of the server's default heartbeats) is dead and opened again.
   */
  sseTimeout?: number;
  /** Long-poll hold in seconds (default 25; the server allows 0..50, WeChat cuts requests at 60 s). */
  pollTimeout?: number;
  /** On a fallback transport, try the first one again after this long (ms, default 300000). */
  upgradeAfter?: number;
  /**
   * Ack each message once onMessage returned, where the server's schema has
   * an ack(channel, cursor) mutation (found by introspection). Default false.
   */
  ack?: boolean;
}

export interface SubscribeOptions<T = unknown> {
  /**
   * Start after this cursor (from a message, a Reset, history or
   * Query.channel). Without one: the saved cursor (with storage), else the
   * channels' current position.
   */
  cursor?: string;
  /** Each message once, in order per channel. */
  onMessage?: (message: Message<T>) => void;
  onReset?: (reset: Reset) => void;
  /** The server refused the subscription (FORBIDDEN, BAD_USER_INPUT, ...): it has ended. */
  onError?: (error: PushgateError) => void;
}

export interface ClientState {
  status: 'idle' | 'connecting' | 'connected' | 'paused' | 'closed';
  /** The transport in use or being tried. */
  transport: Transport | null;
}

export interface HistoryPage<T = unknown> {
  /** Oldest first. */
  messages: Array<Message<T>>;
  pageInfo: { hasNextPage: boolean; hasPreviousPage: boolean; startCursor: string | null; endCursor: string | null };
}

export interface Client {
  readonly platform: Platform;
  /** The current state; replaced (not mutated) on every change. */
  readonly state: ClientState;
  /** Counters for diagnostics: messages handed to the app, duplicates dropped, sessions lost. */
  readonly stats: { messages: number; duplicates: number; reconnects: number };
  /** Subscribes to 1..32 channels; returns the function that unsubscribes. */
  subscribe<T = unknown>(channels: string | string[], options?: SubscribeOptions<T>): () => void;
  /** A page of a channel's retained messages (first/after forward, last/before backward). */
  history<T = unknown>(channel: string, page?: { first?: number; after?: string; last?: number; before?: string }): Promise<HistoryPage<T>>;
  /** Sends to a channel (an API key, or a token with a publish grant where the namespace allows it). */
  send<T = unknown>(
    channel: string,
    data: T,
    options?: { event?: string; idempotencyKey?: string },
  ): Promise<{ message: Message<T>; duplicate: boolean }>;
  /** Acks a cursor, where the server has an ack mutation; else rejects with code UNSUPPORTED. */
  ack(channel: string, cursor: string): Promise<void>;
  /** Any GraphQL query or mutation over HTTP; resolves with data, rejects with the first error. */
  graphql<T = any>(query: string, variables?: Record<string, unknown>): Promise<T>;
  on(type: 'state', listener: (state: ClientState) => void): () => void;
  /** Connection errors (the client reconnects by itself) and exceptions thrown by your handlers. */
  on(type: 'error', listener: (error: PushgateError | Error) => void): () => void;
  /** Closes every connection and ends every subscription. */
  close(): void;
}

export function createClient(options: ClientOptions): Client;

/** The platform this code runs on. */
export function detectPlatform(): Platform;
