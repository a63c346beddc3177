package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/edgefault/edgefault/harness"
	"github.com/edgefault/edgefault/harness/dashboard"
	"github.com/edgefault/edgefault/scenarios"
)

// ui runs a live session with its dashboard: demo --ui.
func (u *uiFlags) run(cmd *cobra.Command, g *globals, args []string) error {
	host, _, err := net.SplitHostPort(u.listen)
	if err != nil {
		return fmt.Errorf("--listen %q: give HOST:PORT, e.g. 127.0.0.1:8765", u.listen)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) && !u.public {
		return fmt.Errorf("--listen %s: the dashboard changes this machine's qdiscs as root; it listens on loopback unless you also give --public (anyone who can reach it still needs the session's token)", u.listen)
	}
	if err := requireRoot(); err != nil {
		return err
	}
	p, err := newProvider(g, u.provider, providerOptions{backend: u.backend, controlPlanes: true})
	if err != nil {
		return err
	}
	var sc *scenarios.Scenario
	switch {
	case u.file != "" && len(args) > 0:
		return errors.New("give a scenario by name or by -f FILE, not both")
	case u.file != "":
		if sc, err = scenarios.LoadScenarioFile(u.file); err != nil {
			return err
		}
	case len(args) == 1:
		scs, err := load(args)
		if err != nil {
			return err
		}
		sc = scs[0]
	default:
		if sc, err = harness.LiveFleet(p.Info()); err != nil {
			return err
		}
	}
	// Ctrl-C ends the session gracefully (links restored, the session
	// judged and reported); a second one cancels everything.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)

	out := cmd.OutOrStdout()
	fmt.Fprintf(cmd.ErrOrStderr(), "bringing up %s for the presenter (a minute or so)...\n", sc.Metadata.Name)
	o := harness.RunOptions{Provider: p, Reports: u.reports, FleetPrefix: "ui-", Log: g.log, TimeScale: u.timeScale}
	started := make(chan struct{})
	var live *harness.Live
	var startErr error
	go func() {
		live, startErr = harness.StartLive(ctx, sc, o)
		close(started)
	}()
	select {
	case <-started:
	case <-sigs:
		cancel()
		<-started
		if startErr == nil {
			// Up just as the signal came: end it as a session.
			live.Stop()
		}
		return errors.New("interrupted while bringing the fleet up; it was taken down")
	}
	if startErr != nil {
		return startErr
	}
	srv, err := dashboard.New(live, g.log)
	if err != nil {
		live.Stop()
		return err
	}
	ln, url, err := srv.Listen(u.listen)
	if err != nil {
		live.Stop()
		return err
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ctx, ln) }()
	fmt.Fprintf(out, "\nthe dashboard: %s\n(open it in a browser on this machine; Ctrl-C ends the session and writes its report)\n\n", url)
	select {
	case <-sigs:
		fmt.Fprintln(cmd.ErrOrStderr(), "ending the session: restoring every link, letting the runtime settle, judging...")
		go func() {
			<-sigs
			fmt.Fprintln(cmd.ErrOrStderr(), "stopping at once (a third Ctrl-C kills edgefault; 'edgefault cleanup' then removes what is left)")
			signal.Stop(sigs)
			cancel()
		}()
	case err := <-serveErr:
		if err != nil {
			g.log.Error("the dashboard stopped", "err", err)
		}
	}
	res := live.Stop()
	rep := &harness.Report{Started: res.Started, Duration: res.Duration, Provider: p.Name(), Pass: res.Pass, Scenarios: []harness.ScenarioResult{res}}
	files, err := rep.Write(u.reports)
	summary(out, rep)
	for _, f := range files {
		fmt.Fprintln(out, "report:", f)
	}
	if err != nil {
		return err
	}
	if res.Error != "" {
		return errors.New(res.Error)
	}
	return nil
}

type uiFlags struct {
	on, public        bool
	listen, file      string
	provider, backend string
	reports           string
	timeScale         float64
}

func (u *uiFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.BoolVar(&u.on, "ui", false, "serve a live dashboard instead: a fleet up with its runtime and workloads, its links shaped from the page (Ctrl-C ends it and writes a report)")
	fl.StringVar(&u.listen, "listen", "127.0.0.1:8765", "with --ui: where the dashboard listens (loopback unless --public)")
	fl.BoolVar(&u.public, "public", false, "with --ui: allow --listen on a non-loopback address (the token is still required)")
	fl.StringVarP(&u.file, "file", "f", "", "with --ui: a scenario file whose topology, runtime and workloads to bring up (its timeline can be played from the page)")
	fl.Float64Var(&u.timeScale, "time-scale", 0, "with --ui: the time scale steps and the timeline are played at (0: the scenario's own)")
}
