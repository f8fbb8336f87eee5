package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server"
	"github.com/pushgate/pushgate/wechat"
)

// run starts pushgate with args (without the program name) and the
// environment seen through getenv, logs to stdout as JSON, and serves until
// ctx is done or a SIGINT/SIGTERM arrives; then it shuts down gracefully.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	build := readBuild(version)
	subcommand := ""
	if len(args) > 0 && (args[0] == "healthcheck" || args[0] == "print-config-doc") {
		subcommand, args = args[0], args[1:]
	}
	if subcommand == "print-config-doc" { // hidden: make docs writes docs/configuration.md with it
		_, err := io.WriteString(stdout, configDoc())
		return err
	}
	cfg, err := parseConfig(args, getenv, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return nil
	case errors.Is(err, errVersion):
		_, err = fmt.Fprintln(stdout, build)
		return err
	case err != nil:
		return err
	case subcommand == "healthcheck":
		return healthcheck(ctx, cfg)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	log := zerolog.New(stdout).Level(cfg.LogLevel).With().Timestamp().Logger()
	if getenv("GOMAXPROCS") == "" {
		if n := goMaxProcs(cfg.GoMaxProcs, runtime.GOMAXPROCS(0), runtime.NumCPU()); n != runtime.GOMAXPROCS(0) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(n))
		}
	}
	if getenv("GOGC") == "" {
		gc := startGCTuner(uint64(cfg.GCMinHeapMB) << 20)
		defer gc.stop()
	}

	// One set of metrics: the broker's observer, the Redis client's hook
	// and the server count into it.
	metrics := server.NewMetrics()
	metrics.BuildInfo(build.Version, build.Commit, build.GoVersion)

	// pushgate listens first, behind a gate that answers /healthz while
	// the store opens (waitForStore), then installs the server.
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on --addr %s: %w", cfg.Addr, err)
	}
	// Streams (SSE, WebSocket) outlive their requests' handlers and end on
	// Shutdown, by the hook they register (server.New); long-polls and
	// graphql-sse streams end when the base context is cancelled.
	base, cancelBase := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancelBase(nil)
	g := newGate()
	srv := &http.Server{
		Handler:           g,
		BaseContext:       func(net.Listener) context.Context { return base },
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          stdlog.New(log.With().Str("component", "http").Logger(), "", 0),
	}
	served := make(chan error, 1)
	if cfg.TLSCert != "" {
		cert, err := loadCertificate(cfg.TLSCert, cfg.TLSKey, log)
		if err != nil {
			_ = ln.Close()
			return err
		}
		srv.TLSConfig = cert.tlsConfig()
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		go cert.watch(ctx, hup)
		go func() { served <- srv.ServeTLS(ln, "", "") }() // HTTP/2 and HTTP/1.1
	} else {
		go func() { served <- srv.Serve(ln) }()
	}
	// Until the server is installed nothing but the gate has run: closing
	// is all a failure needs.
	opened := false
	defer func() {
		if !opened {
			_ = srv.Close()
			<-served
		}
	}()

	st, err := waitForStore(ctx, cfg, metrics, log, g, ln.Addr().String())
	if err != nil {
		if ctx.Err() != nil {
			log.Info().Msg("stopped while waiting for the store")
			return nil
		}
		return err
	}
	broker := st.broker
	defer st.close()
	wx, err := openWeChat(cfg, st.client, metrics, log)
	if err != nil {
		return err
	}
	if wx != nil {
		wx.Start()
		// Closed after the server: sends in flight may still queue.
		defer func() { _ = wx.Close() }()
	}

	if len(cfg.APIKeys) == 0 {
		log.Warn().Msg("no --api-key: nothing can be sent")
	}
	if cfg.AllowAnonymous {
		log.Warn().Msg("--allow-anonymous: requests without credentials may read (development only)")
	}
	if cfg.ConfigFile != "" {
		log.Info().Str("config", cfg.ConfigFile).Int("namespaces", len(cfg.Namespaces)).Msg("config file loaded")
	}

	streams := new(server.Streams)
	g.open(server.New(server.Config{
		APIKeys:          cfg.APIKeys,
		JWTSecret:        cfg.JWTSecret,
		Tokens:           cfg.JWT,
		AllowAnonymous:   cfg.AllowAnonymous,
		MaxMessageSize:   cfg.MaxMessageSize,
		Namespaces:       cfg.namespaces(),
		AllowedOrigins:   cfg.AllowedOrigins,
		TrustedProxies:   cfg.TrustedProxies,
		WriteTimeout:     cfg.WriteTimeout,
		MaxBodyBytes:     cfg.MaxBodyBytes,
		MaxResponseBytes: cfg.MaxResponseBytes,
		ReadTimeout:      cfg.ReadTimeout,
		Heartbeat:        cfg.Heartbeat,
		Limits:           cfg.Limits,
		Presence:         st.presence,
		Metrics:          metrics,
		MetricsToken:     cfg.MetricsToken,
		Pprof:            cfg.Pprof,
		Console:          cfg.Console,
		Streams:          streams,
		WeChat:           wx,
	}, broker, log))
	opened = true
	log.Info().Str("addr", ln.Addr().String()).Bool("tls", cfg.TLSCert != "").Str("store", st.desc).
		Str("version", build.Version).Str("commit", build.Commit).Str("go", build.GoVersion).Msg("pushgate listening")

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info().Msg("shutting down")
	cancelBase(server.ErrShutdown)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	err = srv.Shutdown(sctx)
	// Streams were told (close 1012, end of SSE): let them finish.
	if werr := streams.Wait(sctx); err == nil && werr != nil {
		err = fmt.Errorf("streams still open: %w", werr)
	}
	if cerr := broker.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info().Msg("stopped")
	return nil
}

// openBroker opens the store the configuration names: Redis with
// --redis-url, else memory. It returns a description for the log without
// secrets, and a function that releases the store's client.
//
// presence opens the matching presence store (in Redis, shared by every
// node); closeStore also stops it.
func openBroker(ctx context.Context, cfg config, metrics *server.Metrics, log zerolog.Logger) (broker pubsub.Broker, desc string, closeStore func(),
	presence func(pubsub.PresenceChange) pubsub.Presence, client redis.UniversalClient, err error) {
	opts := pubsub.Options{
		HistorySize:       cfg.HistorySize,
		HistoryTTL:        cfg.HistoryTTL,
		IdempotencyWindow: cfg.IdempotencyWindow,
		PublishTimeout:    cfg.RedisTimeout,
		Observer:          metrics.Observer(),
		// A panic in a subscription's catch-up ends that subscription only.
		Panicked: func(where string, v any, stack []byte) {
			log.Error().Str("where", where).Str("panic", fmt.Sprint(v)).Str("stack", string(stack)).
				Msg("recovered a panic: one subscription ended")
		},
	}
	if len(cfg.Namespaces) > 0 {
		opts.Retention = cfg.namespaces().Retention
	}
	if cfg.Redis == nil {
		return pubsub.NewMemory(opts), "memory", func() {}, pubsub.NewMemoryPresence, nil, nil
	}
	client = redis.NewUniversalClient(cfg.Redis)
	client.AddHook(metrics.RedisHook())
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	broker, err = pubsub.NewRedis(pctx, client, pubsub.RedisOptions{Options: opts,
		Fencing: cfg.RedisFencing, WaitReplicas: cfg.RedisWaitReplicas, WaitTimeout: cfg.RedisWaitTimeout})
	if err != nil {
		_ = client.Close()
		return nil, "", nil, nil, nil, fmt.Errorf("open --redis-url (%s): %w", pubsub.DescribeRedis(cfg.Redis), err)
	}
	var opened []pubsub.Presence
	presence = func(on pubsub.PresenceChange) pubsub.Presence {
		p := pubsub.NewRedisPresence(client, "", pubsub.DefaultPresenceTTL, on)
		opened = append(opened, p)
		return p
	}
	closeStore = func() {
		for _, p := range opened {
			_ = p.Close()
		}
		_ = client.Close()
	}
	return broker, "redis " + pubsub.DescribeRedis(cfg.Redis), closeStore, presence, client, nil
}

// openWeChat returns the WeChat side of cfg, nil without WeChat apps. With
// Redis (client set) its state (access tokens, queue, ledger) and its
// record of who is online are in Redis, shared by every node; else in
// memory.
func openWeChat(cfg config, client redis.UniversalClient, metrics *server.Metrics, log zerolog.Logger) (*server.WeChat, error) {
	if len(cfg.WeChat.Apps) == 0 {
		return nil, nil
	}
	opts := server.WeChatOptions{Config: cfg.WeChat, Metrics: metrics, Logger: log.With().Str("component", "wechat").Logger()}
	if client != nil {
		opts.Store = wechat.NewRedisStore(client, pubsub.DefaultRedisPrefix)
		opts.Online = pubsub.NewRedisPresence(client, pubsub.DefaultRedisPrefix+"wechat:online:", 0, nil)
	}
	wx, err := server.NewWeChat(opts)
	if err != nil {
		if opts.Online != nil {
			_ = opts.Online.Close()
		}
		return nil, fmt.Errorf("WeChat: %w", err)
	}
	apps := zerolog.Arr()
	for _, id := range wx.Service().Apps() {
		apps.Str(id)
	}
	log.Info().Array("apps", apps).Msg("WeChat on: wechatLogin, notify, /wechat/events/<appId>")
	return wx, nil
}

// redisLog hands go-redis's log lines to zerolog.
type redisLog struct{ log zerolog.Logger }

func (l redisLog) Printf(_ context.Context, format string, v ...any) {
	l.log.Warn().Msg(fmt.Sprintf(format, v...))
}
