// Command ingress is Airlock's optional upload ingress (README, Upload
// ingress): the very registry handler the api function runs, served as a
// long-lived HTTP server in a container (ECS on Fargate behind a load
// balancer; `make image` builds its FROM scratch image) and without the
// front door's body limit, so stock clients (docker push, containerd,
// crane, podman/skopeo) push layers of any size. The api function's upload
// POST answers with an absolute Location on the ingress (its
// AIRLOCK_INGRESS_URL); here a request on an existing upload session is
// authorized by the session's unguessable id (registry.Registry.Ingress),
// anything else by the usual token.
//
//	ingress [-addr :8080]     serve (configuration from the api function's environment variables)
//	ingress -version          print the version and exit
//
// Environment, as the api function's (shared/cloud.FromEnv): AIRLOCK_CONFIG
// (YAML or file:<path>; the image has file:/airlock.yaml), AIRLOCK_TABLE,
// AIRLOCK_BUCKET, LOG_LEVEL; AIRLOCK_PROXYFETCH_FUNCTION is left unset: a
// long-lived server finishes proxy fills and verifications itself. The
// admin user is created by the api function, not here. SIGTERM (ECS stops
// a task with it) drains requests for up to 25 s.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	// CA roots compiled in for a FROM scratch image (used only when the
	// system has none): the AWS SDK's TLS connections need them.
	_ "golang.org/x/crypto/x509roots/fallback"

	"github.com/airlock-registry/airlock/shared/cloud"
	"github.com/airlock-registry/airlock/shared/registry"
)

// version is set by `make image` (-ldflags -X main.version=...).
var version = ""

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "ingress:", err)
		os.Exit(1)
	}
}

func versionString() string {
	v := version
	if v == "" {
		v = "devel"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
			v = bi.Main.Version
		}
	}
	return "airlock-ingress " + v
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("ingress", flag.ContinueOnError)
	addr := fs.String("addr", ":8080", "listen address (the load balancer's target port)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "ingress: Airlock's upload ingress, the registry API without the front door's body limit\n\n"+
			"Usage: ingress [-addr :8080] | -version\n\nEnvironment: AIRLOCK_CONFIG, AIRLOCK_TABLE, AIRLOCK_BUCKET, LOG_LEVEL (as the api function)\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (see -help)", fs.Args())
	}
	if *showVersion {
		_, err := fmt.Fprintln(stdout, versionString())
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for _, v := range []string{"AIRLOCK_TABLE", "AIRLOCK_BUCKET", "AIRLOCK_CONFIG"} {
		if os.Getenv(v) == "" {
			return fmt.Errorf("%s is not set: give the ingress the api function's environment (template.yaml sets it on the task)", v)
		}
	}
	env, err := cloud.FromEnv(ctx)
	if err != nil {
		return err
	}
	if env.Config.Auth == nil {
		return errors.New("the configuration has no auth section: anyone could push and delete; add `auth: {}` (or `auth: {disabled: true}` to allow every request, explicitly)")
	}
	h, err := registry.New(registry.Deps{
		Meta:   env.Meta,
		Blobs:  env.Blobs,
		Config: env.Config,
		Logger: env.Logger,
		Proxy:  env.Proxy,
	})
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *addr, err)
	}
	// IdleTimeout above the load balancer's (ALB: 60 s by default), as AWS
	// recommends, so that the balancer closes idle connections first.
	srv := &http.Server{Handler: h.Ingress(), ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 75 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	env.Logger.Info("ingress ready", "addr", l.Addr().String(), "version", versionString())
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	if err := srv.Shutdown(shut); err != nil {
		log.Printf("shutdown: %v", err)
	}
	return nil
}
