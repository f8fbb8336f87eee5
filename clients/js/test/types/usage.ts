// Compiled (not run) by test/types.test.js with tsc --strict: the README's
// uses of the API type-check against index.d.ts, and misuses do not.
import { createClient, detectPlatform, type Client, type Message, type PushgateError, type Platform } from '@pushgate/client';

const platform: Platform = detectPlatform();
const client: Client = createClient({
  url: 'https://push.example.com',
  getToken: async () => 'token',
  platform,
  transports: ['ws', 'sse', 'poll'],
  storage: { get: async (k: string) => k, set: (_k: string, _v: string) => {} },
  reconnect: { min: 500, max: 15000 },
  ack: false,
});

interface Order {
  status: string;
}

const unsubscribe: () => void = client.subscribe<Order>(['orders:42'], {
  cursor: undefined,
  onMessage: (m: Message<Order>) => {
    const s: string = m.data.status;
    const id: string = m.id;
    const c: string | undefined = m.cursor;
    void [s, id, c];
  },
  onReset: (r) => void r.reason.toUpperCase(),
  onError: (e: PushgateError) => void e.code.toLowerCase(),
});
unsubscribe();

client.on('state', (s) => void (s.transport === 'ws' && s.status === 'connected'));
client.on('error', (e) => void e.message);

async function requests() {
  const page = await client.history<Order>('orders:42', { last: 20 });
  const before: string | null = page.pageInfo.startCursor;
  const sent = await client.send('orders:42', { status: 'paid' }, { idempotencyKey: 'k' });
  const dup: boolean = sent.duplicate;
  const data = await client.graphql<{ channel: { lastId: string } }>('query { channel(name: "x") { lastId } }');
  await client.ack('orders:42', page.messages[0].cursor ?? '');
  const n: number = client.stats.duplicates;
  void [before, dup, data.channel.lastId, n];
}
void requests;
client.close();

// @ts-expect-error: url is required
createClient({ token: 'x' });
// @ts-expect-error: no such transport
createClient({ url: 'x', transports: ['grpc'] });
// @ts-expect-error: on takes 'state' or 'error'
client.on('message', () => {});
