package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"
)

// bench runs one benchmark: connect, warm up, send for the duration, drain,
// and report. It stops by itself: every phase is bounded, and the whole run
// too. When ctx ends early (SIGINT) it stops sending and reports what it
// has.
func bench(ctx context.Context, cfg *config, stderr io.Writer) (*report, error) {
	var logMu sync.Mutex // progress comes from several goroutines
	logf := func(format string, args ...any) {
		if !cfg.quiet {
			logMu.Lock()
			defer logMu.Unlock()
			fmt.Fprintf(stderr, "pushbench: "+format+"\n", args...)
		}
	}
	rep := &report{
		Mode: "load", Target: cfg.addr, Spawned: cfg.spawn, WS: cfg.ws, SSE: cfg.sse, GSSE: cfg.gsse, Poll: cfg.poll,
		Channels: cfg.channels, Broadcast: cfg.broadcast, Senders: cfg.senders, Rate: cfg.rate, Size: cfg.size,
	}
	if cfg.idle {
		rep.Mode = "idle"
	}
	warn := func(format string, args ...any) { rep.Warnings = append(rep.Warnings, fmt.Sprintf(format, args...)) }

	// Each subscriber and sender holds a socket. Raised before spawning, so
	// that a spawned server inherits the limit (it raises its soft limit to
	// the hard one itself).
	if _, err := raiseNoFile(uint64(cfg.conns() + cfg.senders + 256)); err != nil {
		return nil, err
	}

	// The setup (build, spawn) gets its own bound; the run after it too.
	var srv *spawned
	if cfg.spawn {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		var err error
		srv, err = spawnServer(sctx, cfg, logf)
		cancel()
		if err != nil {
			return nil, err
		}
		defer srv.stop()
		cfg.addr = srv.addr
		rep.Target = srv.addr
		rep.Store = "memory"
		if cfg.redisURL != "" {
			rep.Store = "redis"
		}
	}
	hard := cfg.duration + cfg.settle + cfg.drain + 3*cfg.connectTimeout + time.Minute
	runCtx, cancelRun := context.WithTimeout(ctx, hard)
	defer cancelRun()

	host, _, err := net.SplitHostPort(cfg.addr)
	if err != nil {
		return nil, fmt.Errorf("-addr %q: %w", cfg.addr, err)
	}
	if err := checkTarget(runCtx, host, cfg.allowRemote); err != nil {
		return nil, err
	}
	n := cfg.conns()

	sources, err := sourceAddrs(host, cfg.sourceAddrs, n)
	if err != nil {
		return nil, err
	}
	rep.SourceAddrs = len(sources)
	base := "http://" + cfg.addr
	var transports []*http.Transport
	defer func() {
		for _, t := range transports {
			t.CloseIdleConnections()
		}
	}()
	newTransport := func(d *net.Dialer, idle int) *http.Transport {
		t := &http.Transport{
			DialContext:         d.DialContext,
			DisableCompression:  true,
			MaxIdleConns:        idle,
			MaxIdleConnsPerHost: idle,
			IdleConnTimeout:     time.Minute,
			WriteBufferSize:     1024,
			ReadBufferSize:      4096,
		}
		transports = append(transports, t)
		return t
	}
	env := &subEnv{base: base, wsURL: "ws://" + cfg.addr + "/graphql", pollTimeout: cfg.pollTimeout, loops: &feedLoops{}}
	defer env.loops.close() // after the subscribers
	if len(sources) == 0 {
		sources = []netip.Addr{{}}
	}
	for _, src := range sources {
		d := newDialer(cfg.allowRemote, src)
		env.paths = append(env.paths, clientPath{
			dial:       d.DialContext,
			pollClient: &http.Client{Transport: newTransport(d, cfg.poll/len(sources)+1)},
		})
	}
	sendDialer := newDialer(cfg.allowRemote, netip.Addr{})
	sendTransport := newTransport(sendDialer, cfg.senders+1)

	// What the server costs.
	smp := &sampler{src: pickSource(runCtx, cfg, srv, &rep.Server, &http.Client{Transport: sendTransport}, warn)}
	if smp.src != nil {
		go smp.watch(runCtx, 250*time.Millisecond)
	}
	sample := func() procSample {
		if smp.src == nil {
			return procSample{}
		}
		s, err := smp.take(runCtx)
		if err != nil && rep.Server.Error == "" {
			rep.Server.Error = err.Error()
			warn("server figures: %v", err)
		}
		return s
	}

	// Subscribers.
	run := randomRun()
	lay := planLayout(cfg)
	rep.NChannels = 0
	for _, g := range lay.groups {
		rep.NChannels += len(g)
	}
	live := &liveCounters{}
	var lat histogram
	subs := make([]*subscriber, n)
	ttl := hard + time.Hour
	for i := range subs {
		kind := "ws"
		switch {
		case i >= cfg.ws+cfg.sse+cfg.gsse:
			kind = "poll"
		case i >= cfg.ws+cfg.sse:
			kind = "gsse"
		case i >= cfg.ws:
			kind = "sse"
		}
		s := &subscriber{idx: i, kind: kind, channels: lay.subChannels[i]}
		if !cfg.anonymous {
			if s.token, err = mintToken(cfg.jwtSecret, i, s.channels, ttl); err != nil {
				return nil, fmt.Errorf("mint token: %w", err)
			}
		}
		s.tr = newTracker(run, s.channels, lay.subGroups[i], cfg.senders, live, &lat)
		subs[i] = s
	}

	before := sample()
	rep.Server.RSSBefore = before.rss
	logf("connecting %d subscribers to %s", n, cfg.addr)
	subCtx, stopSubs := context.WithCancel(runCtx)
	var subsDone sync.WaitGroup
	defer func() {
		stopSubs()
		subsDone.Wait()
	}()
	connectStart := time.Now()
	connected := connectAll(runCtx, subCtx, cfg, env, subs, &subsDone, logf)
	rep.Connect = summarizeConnect(subs, time.Since(connectStart))
	if connected == 0 {
		return rep, fmt.Errorf("no subscriber connected: %v", rep.Connect.Errors)
	}
	if runCtx.Err() != nil {
		rep.Interrupted = true
		warn("stopped while connecting")
		return rep, nil
	}
	if f := rep.Connect.Failed; f > 0 {
		warn("%d of %d subscribers did not connect; the figures cover the %d that did", f, n, connected)
	}

	plan := &sendPlan{
		addr: cfg.addr, key: cfg.key, dial: sendDialer.DialContext,
		groups: lay.groups, broadcast: cfg.broadcast > 0, size: cfg.size, run: run,
	}
	plan.perCall = make([]int64, len(lay.groups))
	for _, s := range subs {
		if s.connected {
			for _, g := range lay.subGroups[s.idx] {
				plan.perCall[g]++
			}
		}
	}

	if cfg.idle {
		logf("%d connected; settling %v", connected, cfg.settle)
		settleStart := sample()
		select {
		case <-time.After(cfg.settle):
		case <-runCtx.Done():
			rep.Interrupted = true
		}
		settled := sample()
		rep.Server.RSSConnected = settled.rss
		rep.Server.RSSEnd = settled.rss
		rep.Server.ConnectCPUSec = settleStart.cpu - before.cpu
		if d := settled.at.Sub(settleStart.at).Seconds(); d > 0 {
			rep.Server.IdleCPUPerSec = (settled.cpu - settleStart.cpu) / d
		}
		rep.Server.MemPerConnKB = float64(settled.rss-before.rss) / float64(connected) / 1024
		rep.Server.RSSPeak = smp.peakRSS()
		stopSubs()
		subsDone.Wait()
		summarizeEnds(rep, subs)
		return rep, nil
	}

	// Warm-up: a message on every channel, until each subscriber has seen
	// one on each of its channels, so every feed is known to be live before
	// the first counted message (a WebSocket subscribe has no
	// acknowledgement).
	readyStart := time.Now()
	notReady, err := warmUp(runCtx, cfg, plan, subs, live, int64(connected))
	if runCtx.Err() != nil {
		rep.Interrupted = true
		warn("stopped during the warm-up")
		return rep, nil
	}
	if err != nil {
		return rep, err
	}
	rep.Connect.ReadySec = time.Since(connectStart).Seconds()
	rep.Connect.NotReady = notReady
	if notReady > 0 {
		warn("%d subscribers never saw the warm-up within %v: their losses may be messages sent before their feed was live", notReady, cfg.connectTimeout)
	}
	logf("%d ready in %v; sending for %v", connected-notReady, time.Since(readyStart).Round(time.Millisecond), cfg.duration)
	ready := sample()
	rep.Server.RSSConnected = ready.rss
	rep.Server.ConnectCPUSec = ready.cpu - before.cpu
	rep.Server.MemPerConnKB = float64(ready.rss-before.rss) / float64(connected) / 1024

	// Send.
	if cfg.cpuProfile != "" {
		stopProfile, err := startCPUProfile(cfg.cpuProfile)
		if err != nil {
			return rep, err
		}
		defer stopProfile()
	}
	cpu0, cpuErr0 := selfCPU()
	sendStart := time.Now()
	stopAt := sendStart.Add(cfg.duration)
	senders := make([]*sender, cfg.senders)
	var sendWG sync.WaitGroup
	perSender := cfg.rate / float64(cfg.senders)
	for w := range senders {
		senders[w] = newSender(w, plan)
		sendWG.Add(1)
		go func() {
			defer sendWG.Done()
			// Spread the senders over one period, so their ticks do not
			// coincide.
			start := sendStart
			if cfg.rate > 0 {
				start = sendStart.Add(time.Duration(float64(w) / cfg.rate * float64(time.Second)))
			}
			if cfg.rate <= 0 {
				senders[w].flood(runCtx, env.loops, stopAt)
				return
			}
			senders[w].pace(runCtx, perSender, start, stopAt)
		}()
	}
	progressDone := make(chan struct{})
	go progress(runCtx, progressDone, cfg, plan, live, &lat, sendStart, logf)
	sendWG.Wait()
	sendEnd := time.Now()
	if ctx.Err() != nil || sendEnd.Before(stopAt.Add(-50*time.Millisecond)) {
		rep.Interrupted = true
	}
	if runCtx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
		warn("the run's overall time limit of %v ended it", hard)
	}

	// Drain: what was sent is still on its way.
	drainUntil := time.Now().Add(cfg.drain)
	for live.unique.Load() < plan.expected.Load() && time.Now().Before(drainUntil) && runCtx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	close(progressDone)
	end := sample()
	cpu1, cpuErr1 := selfCPU()
	stopSubs()
	subsDone.Wait()

	// Figures.
	rep.DurationSec = sendEnd.Sub(sendStart).Seconds()
	rep.Send = sendReport{
		Calls: plan.calls.Load(), OK: plan.ok.Load(), Errors: map[string]int64{},
		P50Ms: ms(plan.lat.Quantile(0.5)), P99Ms: ms(plan.lat.Quantile(0.99)), MaxMs: ms(plan.lat.Max()),
	}
	maps.Copy(rep.Send.Errors, plan.errors)
	rep.Send.Failed = rep.Send.Calls - rep.Send.OK
	rep.Send.Messages = plan.messages.Load()
	if rep.DurationSec > 0 {
		rep.Send.PerSecond = float64(rep.Send.Calls) / rep.DurationSec
	}
	d := &rep.Delivery
	d.Expected = plan.expected.Load()
	for _, s := range subs {
		if !s.connected {
			continue
		}
		st := s.tr.stats
		d.Received += st.received
		d.Unique += st.unique
		d.Duplicated += st.duplicated
		d.Reordered += st.reordered
		d.IDGaps += s.tr.idGaps()
		d.IDDuplicates += st.idDups
		d.IDReordered += st.idBack
		d.Resets += st.resets
		d.Foreign += st.foreign + st.badSender
		d.ParseErrors += st.parseErrs
		d.PollLimited += st.limited
		for i := range s.tr.chans {
			c := &s.tr.chans[i]
			for w, snd := range senders {
				d.Lost += c.streams[w].missing(snd.seq[c.group]-1, snd.failed[c.group])
			}
		}
	}
	summarizeEnds(rep, subs)
	if last := live.lastRecv.Load(); last > 0 {
		if span := time.Unix(0, last).Sub(sendStart).Seconds(); span > 0 {
			d.PerSecond = float64(d.Received) / span
		}
	}
	rep.Latency = latencyReport{
		Count: lat.Count(), P50Ms: ms(lat.Quantile(0.5)), P90Ms: ms(lat.Quantile(0.9)), P99Ms: ms(lat.Quantile(0.99)),
		P999Ms: ms(lat.Quantile(0.999)), MaxMs: ms(lat.Max()), MeanMs: lat.Mean() / 1e6,
	}
	if smp.src != nil && rep.Server.Error == "" {
		rep.Server.CPUSec = end.cpu - ready.cpu
		if wall := end.at.Sub(ready.at).Seconds(); wall > 0 {
			rep.Server.CPUCores = rep.Server.CPUSec / wall
		}
		if d.Received > 0 {
			rep.Server.CPUPerDelivUs = rep.Server.CPUSec / float64(d.Received) * 1e6
		}
		rep.Server.RSSEnd = end.rss
		rep.Server.RSSPeak = smp.peakRSS()
	}
	if err := errors.Join(cpuErr0, cpuErr1); err != nil {
		rep.Client.Error = err.Error()
		warn("pushbench's own CPU is not measured: %v", err)
	} else {
		rep.Client.CPUSec = cpu1 - cpu0
		if d.Received > 0 {
			rep.Client.CPUPerDelivUs = rep.Client.CPUSec / float64(d.Received) * 1e6
		}
	}
	if d.Unique < d.Expected && d.Lost == 0 {
		warn("%d deliveries still missing when the drain of %v ended", d.Expected-d.Unique, cfg.drain)
	}
	if rep.Send.Failed > 0 {
		warn("%d calls failed; their messages are not expected, and not counted as lost", rep.Send.Failed)
	}
	if cfg.rate > 0 && rep.Send.PerSecond < 0.9*cfg.rate {
		warn("the senders reached %.1f calls/s of the %g asked: the server (or pushbench) could not keep up", rep.Send.PerSecond, cfg.rate)
	}
	return rep, nil
}

// connectAll connects the subscribers, at most -connect-concurrency at a
// time, and returns how many are live. Each subscriber keeps reading in
// its own goroutine (counted in done) until subCtx ends.
func connectAll(ctx, subCtx context.Context, cfg *config, env *subEnv, subs []*subscriber, done *sync.WaitGroup, logf func(string, ...any)) int {
	sem := make(chan struct{}, cfg.connectConcurrency)
	var ok atomic.Int64
	var finished sync.WaitGroup
	stopTicker := make(chan struct{})
	defer close(stopTicker)
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopTicker:
				return
			case <-t.C:
				logf("connected %d/%d", ok.Load(), len(subs))
			}
		}
	}()
	report := func(s *subscriber) {
		if s.connected {
			ok.Add(1)
		}
		<-sem
		finished.Done()
	}
	for _, s := range subs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		finished.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			s.run(subCtx, env, cfg.connectTimeout, report)
		}()
	}
	finished.Wait()
	return int(ok.Load())
}

// warmUp sends the warm-up to the channels of subscribers that have not
// seen it on each, every 200 ms, until every connected subscriber is
// ready or -connect-timeout passes; it returns how many never got ready.
func warmUp(ctx context.Context, cfg *config, plan *sendPlan, subs []*subscriber, live *liveCounters, connected int64) (int, error) {
	deadline := time.Now().Add(cfg.connectTimeout)
	for {
		var cold []string
		seen := make(map[string]bool)
		for _, s := range subs {
			if !s.connected {
				continue
			}
			for i := range s.tr.chans {
				c := &s.tr.chans[i]
				if !c.warm.Load() && !seen[c.name] {
					seen[c.name] = true
					cold = append(cold, c.name)
				}
			}
		}
		if len(cold) == 0 {
			return 0, nil
		}
		if err := plan.warm(ctx, cold); err != nil {
			return 0, err
		}
		next := time.Now().Add(200 * time.Millisecond)
		for live.ready.Load() < connected && time.Now().Before(next) && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		if live.ready.Load() >= connected {
			return 0, nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return int(connected - live.ready.Load()), nil
		}
	}
}

// progress prints a line a second while sending and draining.
func progress(ctx context.Context, done <-chan struct{}, cfg *config, plan *sendPlan, live *liveCounters, lat *histogram, start time.Time, logf func(string, ...any)) {
	if cfg.quiet {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var lastCalls, lastRecv int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case now := <-t.C:
			calls, recv := plan.calls.Load(), live.received.Load()
			logf("%4.0fs  calls %d (+%d)  deliveries %d (+%d)  expected %d  max latency %s",
				now.Sub(start).Seconds(), calls, calls-lastCalls, recv, recv-lastRecv, plan.expected.Load(), fmtMs(ms(lat.Max())))
			lastCalls, lastRecv = calls, recv
		}
	}
}

func summarizeConnect(subs []*subscriber, total time.Duration) connectReport {
	var h histogram
	c := connectReport{Attempted: len(subs), TotalSec: total.Seconds(), Errors: map[string]int64{}}
	for _, s := range subs {
		switch {
		case s.connected:
			c.Connected++
			h.RecordDuration(s.connectDur)
		case s.connectErr != nil:
			c.Failed++
			c.Errors[s.errorKind(s.connectErr)]++
		default:
			c.Failed++
			c.Errors["not attempted (stopped)"]++
		}
	}
	c.P50Ms, c.P99Ms, c.MaxMs = ms(h.Quantile(0.5)), ms(h.Quantile(0.99)), ms(h.Max())
	return c
}

// summarizeEnds counts the feeds that ended before the run stopped them.
func summarizeEnds(rep *report, subs []*subscriber) {
	rep.Delivery.EndErrors = map[string]int64{}
	for _, s := range subs {
		if s.connected && s.endErr != nil {
			rep.Delivery.Disconnected++
			rep.Delivery.EndErrors[s.errorKind(s.endErr)]++
		}
	}
}

// pickSource chooses where the server's figures come from: the spawned
// PID, -pid, the owner of the listening socket, or /metrics.
func pickSource(ctx context.Context, cfg *config, srv *spawned, out *serverReport, client *http.Client, warn func(string, ...any)) procSource {
	pid := cfg.pid
	how := "-pid"
	if srv != nil {
		pid, how = srv.cmd.Process.Pid, "spawned"
	}
	var why []string
	if pid == 0 {
		port, err := portOf(cfg.addr)
		if err == nil {
			pid, err = findListenerPID("/proc", port)
		}
		if err != nil {
			why = append(why, err.Error())
		}
		how = "listening socket"
	}
	if pid > 0 {
		src := newPIDSource(pid)
		if _, err := src.sample(ctx); err == nil {
			out.PID, out.Source = pid, "proc"
			return src
		} else {
			why = append(why, fmt.Sprintf("pid %d (%s): %v", pid, how, err))
		}
	}
	m := &metricsSource{url: "http://" + cfg.addr + "/metrics", client: client}
	if _, err := m.sample(ctx); err == nil {
		out.Source = "metrics"
		return m
	} else {
		why = append(why, err.Error())
	}
	out.Error = errors.Join(errorsOf(why)...).Error()
	warn("the server's CPU and memory are not measured: %s", out.Error)
	return nil
}

func errorsOf(msgs []string) []error {
	errs := make([]error, len(msgs))
	for i, m := range msgs {
		errs[i] = errors.New(m)
	}
	return errs
}

// randomRun returns the run's id, which every message carries: messages of
// another run (a concurrent pushbench, or history) are not counted.
func randomRun() int64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return int64(binary.LittleEndian.Uint64(b[:]) >> 12) // JSON-safe: below 2^53
}

// startCPUProfile profiles pushbench itself into path until the returned
// function is called.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
