// Command localdev runs Airlock on one machine: it starts local emulators of
// DynamoDB (dynalite or DynamoDB Local) and S3 (versitygw or MinIO) with their
// data under one directory, creates the table and bucket template.yaml
// defines, and serves the very same registry handler the Lambda function runs
// on 127.0.0.1 (default :5000).
//
//	go run ./localdev [-addr 127.0.0.1:5000] [-data .localdev] [-config localdev/airlock.yaml]
//	                  [-max-body BYTES] [-ingress-addr 127.0.0.1:5001 [-ingress-url URL]] [-dynamo dynalite|ddblocal] [-s3 versitygw|minio] [-emulators-only]
//	                  [-dynamo-addr 127.0.0.1:8000] [-s3-addr 127.0.0.1:9000] [-fill-retry 5m] [-purge-every 1h]
//	                  [-purge-clock-ahead 0] [-log-level info] [-users users.yaml]
//	go run ./localdev refresh [-addr 127.0.0.1:5000] [-u admin:<password>] <proxy>/<image>:<tag>
//
// Proxy fills that outlive their budget are handed to the proxyfetch code
// in-process (the Lambda deployment invokes the proxyfetch function), and
// parked fills are retried every -fill-retry, as the function's schedule does;
// every purge task runs every -purge-every (the purge function's schedule;
// POST /airlock/api/purge?task=&dryRun= runs one now).
// With -ingress-addr a second listener serves the upload ingress (README,
// Upload ingress: the same handler without -max-body, upload sessions as
// capabilities), and the main listener's upload POST answers with its
// absolute Location there.
// "refresh" asks a running localdev to revalidate one cached proxy tag now.
//
// Once it accepts requests it prints exactly one line containing "ready" and
// the URL. SIGINT or SIGTERM stops every child process.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/airlock-registry/airlock/localdev/harness"
	"github.com/airlock-registry/airlock/shared/config"
	"github.com/airlock-registry/airlock/shared/purge"
	"github.com/airlock-registry/airlock/shared/registry"
	"github.com/airlock-registry/airlock/shared/repo"
	"github.com/airlock-registry/airlock/shared/storage/dynamo"
	"github.com/airlock-registry/airlock/shared/storage/s3store"
)

// options are the command-line flags.
type options struct {
	addr          string
	data          string
	config        string
	maxBody       int64
	dynamo        string
	s3            string
	emulatorsOnly bool
	logLevel      string
	// dynamoAddr and s3Addr, when set, are fixed addresses relayed to the
	// emulators (which start on free ports): localdev/sam-env.json uses them.
	dynamoAddr, s3Addr string
	// fillRetry is the period of the parked-fill retry (proxyfetch's schedule).
	fillRetry time.Duration
	// purgeEvery is the period of the purge (the purge function's schedule; 0: off).
	purgeEvery time.Duration
	// purgeClockAhead moves the purge's clock ahead of the real one (tests only).
	purgeClockAhead time.Duration
	// users is a YAML file of users to create at start (auth on).
	users string
	// ingressAddr, when set, is the listen address of the upload ingress;
	// ingressURL what upload Locations name (default http://<its address>).
	ingressAddr, ingressURL string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "refresh" {
		os.Exit(refreshCmd(os.Args[2:], os.Stdout, os.Stderr))
	}
	var o options
	flag.StringVar(&o.addr, "addr", "127.0.0.1:5000", "listen address of the registry (port 0: any free port)")
	flag.StringVar(&o.data, "data", ".localdev", "directory holding the emulators' data and logs")
	flag.StringVar(&o.config, "config", "", "registry configuration file (default: localdev/airlock.yaml in the repository)")
	flag.Int64Var(&o.maxBody, "max-body", 0, "largest request body accepted in bytes, emulating API Gateway/Lambda (0: no limit; the api function on AWS: 4706379)")
	flag.StringVar(&o.dynamo, "dynamo", "dynalite", "DynamoDB emulator: dynalite or ddblocal (ddblocal only inside `unshare -n`)")
	flag.StringVar(&o.s3, "s3", "versitygw", "S3 emulator: versitygw or minio")
	flag.BoolVar(&o.emulatorsOnly, "emulators-only", false, "start the emulators, create table and bucket, print their endpoints, and serve nothing")
	flag.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	flag.StringVar(&o.dynamoAddr, "dynamo-addr", "", "also serve the DynamoDB emulator at this fixed address (e.g. 127.0.0.1:8000, as localdev/sam-env.json expects)")
	flag.StringVar(&o.s3Addr, "s3-addr", "", "also serve the S3 emulator at this fixed address (e.g. 127.0.0.1:9000, as localdev/sam-env.json expects)")
	flag.StringVar(&o.users, "users", "", "YAML file of users to create at start when auth is on (users: [{name, password or passwordEnv, roles}]); existing users are kept")
	flag.StringVar(&o.ingressAddr, "ingress-addr", "", "also serve the upload ingress here (no -max-body; the main listener's upload POST sends clients to it), as template.yaml's UploadIngress=fargate")
	flag.StringVar(&o.ingressURL, "ingress-url", "", "base URL that upload Locations name for the ingress (default http://<-ingress-addr's address>; set it when a proxy fronts that listener)")
	flag.DurationVar(&o.fillRetry, "fill-retry", 5*time.Minute, "period of the retry of parked proxy fills (the proxyfetch function's schedule on AWS)")
	flag.DurationVar(&o.purgeEvery, "purge-every", time.Hour, "period of the purge, every task for real (the purge function's schedule on AWS; 0: off; POST /airlock/api/purge runs one now)")
	flag.DurationVar(&o.purgeClockAhead, "purge-clock-ahead", 0, "FOR TESTS ONLY: the purge's clock (the -purge-every timer and POST /airlock/api/purge) runs this far ahead of the real one, so the purge treats everything as that much older than it is and grace periods pass at once; unsafe with concurrent pushes (0: the real clock)")
	flag.Parse()

	if o.purgeClockAhead < 0 {
		fmt.Fprintf(os.Stderr, "localdev: -purge-clock-ahead %s: want a duration >= 0\n", o.purgeClockAhead)
		os.Exit(2)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "localdev: -log-level: %v\n", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, log); err != nil {
		log.Error("localdev failed", "err", err)
		os.Exit(1)
	}
}

// emulators are the running DynamoDB and S3 emulators.
type emulators struct {
	dynamo, s3 *harness.Proc
}

// stop stops both emulators, logging failures.
func (e *emulators) stop(log *slog.Logger) {
	for _, p := range []*harness.Proc{e.dynamo, e.s3} {
		if p == nil {
			continue
		}
		if err := p.Stop(); err != nil {
			log.Warn("stop emulator", "name", p.Name, "err", err)
		}
	}
}

// exited returns a channel closed when either emulator ends.
func (e *emulators) exited() <-chan string {
	ch := make(chan string, 2)
	for _, p := range []*harness.Proc{e.dynamo, e.s3} {
		go func() { <-p.Done(); ch <- p.Name + " (log " + p.LogPath + ")" }()
	}
	return ch
}

func run(ctx context.Context, o options, log *slog.Logger) error {
	if o.config == "" {
		root, err := harness.Root()
		if err != nil {
			return err
		}
		o.config = filepath.Join(root, "localdev", "airlock.yaml")
	}
	cfg, err := config.Load(o.config)
	if err != nil {
		return err
	}

	emu, err := startEmulators(ctx, o, log)
	if emu != nil {
		defer emu.stop(log)
	}
	if err != nil {
		return err
	}
	for _, fw := range []struct {
		addr string
		p    *harness.Proc
	}{{o.dynamoAddr, emu.dynamo}, {o.s3Addr, emu.s3}} {
		if fw.addr == "" {
			continue
		}
		ep, err := forward(ctx, fw.addr, fw.p.Endpoint, log)
		if err != nil {
			return fmt.Errorf("%s at a fixed address: %w", fw.p.Name, err)
		}
		log.Info("emulator relayed", "name", fw.p.Name, "endpoint", ep, "to", fw.p.Endpoint)
		fw.p.Endpoint = ep
	}
	db, err := harness.DynamoClient(ctx, emu.dynamo.Endpoint)
	if err != nil {
		return err
	}
	if err := harness.CreateTable(ctx, db, harness.Table); err != nil {
		return err
	}
	s3c, err := s3store.NewClient(ctx, s3store.Options{
		Endpoint: emu.s3.Endpoint, Region: harness.Region,
		AccessKey: harness.AccessKey, SecretKey: harness.SecretKey,
	})
	if err != nil {
		return err
	}
	if err := harness.CreateBucket(ctx, s3c, harness.Bucket); err != nil {
		return err
	}

	if o.emulatorsOnly {
		fmt.Printf("emulators ready: AIRLOCK_DYNAMODB_ENDPOINT=%s AIRLOCK_S3_ENDPOINT=%s AIRLOCK_TABLE=%s AIRLOCK_BUCKET=%s AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s AWS_REGION=%s\n",
			emu.dynamo.Endpoint, emu.s3.Endpoint, harness.Table, harness.Bucket, harness.AccessKey, harness.SecretKey, harness.Region)
		select {
		case <-ctx.Done():
			log.Info("stopping")
			return nil
		case name := <-emu.exited():
			return fmt.Errorf("emulator %s exited", name)
		}
	}

	var ingress net.Listener
	if o.ingressAddr != "" {
		if ingress, err = net.Listen("tcp", o.ingressAddr); err != nil {
			return fmt.Errorf("-ingress-addr: listen %s: %w", o.ingressAddr, err)
		}
		defer ingress.Close()
		if o.ingressURL == "" {
			o.ingressURL = "http://" + ingress.Addr().String()
		}
	} else if o.ingressURL != "" {
		return errors.New("-ingress-url needs -ingress-addr")
	}

	purgeNow := time.Now
	if ahead := o.purgeClockAhead; ahead > 0 {
		purgeNow = func() time.Time { return time.Now().Add(ahead) }
		log.Warn("the purge's clock runs ahead of the real one (-purge-clock-ahead, tests only): it deletes what is younger than its grace periods, also items of pushes in progress", "ahead", ahead)
	}

	// Fills handed off run here, in the background, as the proxyfetch
	// function would (async invoke); parked fills are retried on a timer.
	var h *registry.Registry
	handoff := func(_ context.Context, job repo.FillJob) error {
		go func() {
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Minute)
			defer cancel()
			if err := h.Repositories().RunFill(fctx, job); err != nil {
				log.Warn("proxy fill (proxyfetch in-process)", "repo", job.Repo, "digest", job.Digest, "err", err)
			}
		}()
		return nil
	}
	h, err = registry.New(registry.Deps{
		Meta: dynamo.New(db, harness.Table),
		// Presigned URLs name the emulator as localhost: another host name
		// than the registry's 127.0.0.1, so clients do not forward their
		// registry token along the 307 (MinIO refuses two authentications).
		Blobs:   s3store.New(s3c, harness.Bucket, s3store.WithPresignEndpoint(strings.Replace(emu.s3.Endpoint, "127.0.0.1", "localhost", 1))),
		Config:  cfg,
		MaxBody: o.maxBody,
		Logger:  log,
		Proxy:   repo.ProxyOptions{Handoff: handoff},

		IngressURL: o.ingressURL, // -ingress-addr
		PurgeNow:   purgeNow,     // -purge-clock-ahead
	})
	if err != nil {
		return err
	}
	go every(ctx, o.fillRetry, func() {
		if n, err := h.Repositories().RetryFills(ctx); n > 0 || err != nil {
			log.Info("parked proxy fills retried", "count", n, "err", err)
		}
	})
	pg, err := purge.New(purge.Deps{Meta: h.Meta, Blobs: h.Blobs, Config: cfg, Logger: log, Now: purgeNow})
	if err != nil {
		return err
	}
	go every(ctx, o.purgeEvery, func() {
		if _, err := pg.RunAll(ctx, false); err != nil {
			log.Warn("purge", "err", err)
		}
	})
	note, err := bootstrapAdmin(ctx, h, cfg, o.data)
	if err != nil {
		return err
	}
	if err := seedUsers(ctx, h, o.users, log); err != nil {
		return err
	}
	if ingress != nil {
		isrv := &http.Server{Handler: h.Ingress(), ReadHeaderTimeout: 30 * time.Second}
		go func() { _ = isrv.Serve(ingress) }()
		defer isrv.Close()
		note += "; upload ingress on http://" + ingress.Addr().String()
		if o.ingressURL != "http://"+ingress.Addr().String() {
			note += " as " + o.ingressURL
		}
	}
	return serve(ctx, o.addr, h, emu, note, log)
}

// startEmulators installs what is missing and starts the chosen emulators
// with their data under o.data. On error it returns what it started, to stop.
func startEmulators(ctx context.Context, o options, log *slog.Logger) (*emulators, error) {
	if err := harness.EnsureTools(ctx); err != nil {
		return nil, err
	}
	emu := &emulators{}
	var err error
	t0 := time.Now()
	switch o.dynamo {
	case "dynalite":
		emu.dynamo, err = harness.StartDynalite(ctx, filepath.Join(o.data, "dynalite"))
	case "ddblocal":
		emu.dynamo, err = harness.StartDynamoDBLocal(ctx, filepath.Join(o.data, "ddblocal"))
	default:
		return nil, fmt.Errorf("-dynamo %q: want dynalite or ddblocal", o.dynamo)
	}
	if err != nil {
		return emu, err
	}
	log.Info("dynamodb emulator up", "name", emu.dynamo.Name, "endpoint", emu.dynamo.Endpoint, "log", emu.dynamo.LogPath, "took", time.Since(t0).Round(time.Millisecond))

	t0 = time.Now()
	switch o.s3 {
	case "versitygw":
		emu.s3, err = harness.StartVersitygw(ctx, filepath.Join(o.data, "versitygw"))
	case "minio":
		if err = harness.EnsureMinIO(ctx); err == nil {
			emu.s3, err = harness.StartMinIO(ctx, filepath.Join(o.data, "minio"))
		}
	default:
		return emu, fmt.Errorf("-s3 %q: want versitygw or minio", o.s3)
	}
	if err != nil {
		return emu, err
	}
	log.Info("s3 emulator up", "name", emu.s3.Name, "endpoint", emu.s3.Endpoint, "log", emu.s3.LogPath, "took", time.Since(t0).Round(time.Millisecond))
	return emu, nil
}

// serve listens on addr, prints the ready line, and serves h until ctx ends
// or an emulator dies.
func serve(ctx context.Context, addr string, h http.Handler, emu *emulators, note string, log *slog.Logger) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	fmt.Printf("airlock ready on http://%s (%s)\n", l.Addr(), note)

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("stopping")
	case name := <-emu.exited():
		runErr = fmt.Errorf("emulator %s exited", name)
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			runErr = fmt.Errorf("serve: %w", err)
		}
	}
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shut); err != nil {
		log.Warn("shutdown", "err", err)
	}
	return runErr
}

// every runs fn every period until ctx ends (0: never): the schedules of the
// proxyfetch and purge functions on AWS.
func every(ctx context.Context, period time.Duration, fn func()) {
	if period <= 0 {
		return
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}
