// Command airlock pushes images to an Airlock registry (README, The airlock
// CLI): from an OCI layout or a `docker save` tarball (push), or from any
// registry (copy). Blobs the destination has are skipped (HEAD); the others
// go straight to S3 with presigned part URLs when the registry advertises
// direct uploads (Airlock-Direct-Upload: parts), else through the standard
// upload API. Credentials come from the Docker config and its credential
// helpers (authn.DefaultKeychain).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
)

const mib = 1 << 20

// usageError is a bad command line (exit status 2, usage printed).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

const topUsage = `airlock: push images to an Airlock registry

Usage:
  airlock push [flags] SRC DST   push a local image (oci:<dir>[:tag], docker-archive:<file>[:tag])
  airlock copy [flags] SRC DST   copy an image from any registry

Run 'airlock <command> --help' for the flags of a command.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	var ue usageError
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.As(err, &ue):
		fmt.Fprintln(os.Stderr, "airlock:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "airlock:", err)
		os.Exit(1)
	}
}

// options are the flags shared by push and copy.
type options struct {
	insecure bool
	jobs     int
	parts    int
	partSize int64
	quiet    bool
}

func (o *options) register(fs *flag.FlagSet) {
	fs.BoolVar(&o.insecure, "insecure", false, "talk plain http to the registries (loopback and private addresses use http anyway)")
	fs.IntVar(&o.jobs, "jobs", 4, "blobs uploaded in parallel")
	fs.IntVar(&o.parts, "parts", 4, "parts of one blob sent to S3 in parallel (direct uploads; memory: jobs × parts × part size)")
	var ps int64
	fs.Func("part-size", "direct-upload part size in MiB (5 to 5120; default: the registry's choice, 16 MiB)", func(v string) error {
		_, err := fmt.Sscanf(v, "%d", &ps)
		if err != nil || ps < 5 || ps > 5120 {
			return fmt.Errorf("part size %q: want MiB from 5 to 5120", v)
		}
		o.partSize = ps * mib
		return nil
	})
	fs.BoolVar(&o.quiet, "quiet", false, "no progress lines")
}

// run is the command line without the process (tests call it).
func run(ctx context.Context, args []string, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, topUsage)
		return usageError{"a command is required: push or copy"}
	}
	cmd, args := args[0], args[1:]
	var srcHelp string
	switch cmd {
	case "push":
		srcHelp = `SRC is a local image:
  oci:<dir>[:tag]            an OCI image layout (the tag is its org.opencontainers.image.ref.name;
                             without one the layout must hold a single image or index)
  docker-archive:<file>[:tag]  a 'docker save' tarball (the tag picks one of several images)
DST is a registry reference, e.g. registry.example.com/team/app:1`
	case "copy":
		srcHelp = `SRC is an image in any registry (e.g. docker.io/library/alpine:3.20, an index copies
every platform), DST a registry reference, e.g. registry.example.com/team/app:1`
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stderr, topUsage)
		return flag.ErrHelp
	default:
		fmt.Fprint(stderr, topUsage)
		return usageError{fmt.Sprintf("unknown command %q: want push or copy", cmd)}
	}
	fs := flag.NewFlagSet("airlock "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	o.register(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: airlock %s [flags] SRC DST\n\n%s\n\nFlags:\n", cmd, srcHelp)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return usageError{fmt.Sprintf("%s takes SRC and DST, got %d arguments", cmd, fs.NArg())}
	}
	if o.jobs < 1 || o.parts < 1 {
		return usageError{"--jobs and --parts must be at least 1"}
	}
	src, dst := fs.Arg(0), fs.Arg(1)
	var prog io.Writer = stderr
	if o.quiet {
		prog = io.Discard
	}
	p, err := newPusher(ctx, dst, o, prog)
	if err != nil {
		return err
	}
	var s source
	if cmd == "push" {
		if s, err = localSource(src); err != nil {
			if strings.Contains(err.Error(), "want oci:") {
				return usageError{err.Error()}
			}
			return err
		}
	} else if s, err = remoteSource(ctx, src, o.insecure); err != nil {
		return err
	}
	if err := p.push(ctx, s); err != nil {
		return err
	}
	fmt.Fprintf(prog, "pushed %s@%s\n", p.repo.Name(), p.pushedDigest)
	return nil
}
