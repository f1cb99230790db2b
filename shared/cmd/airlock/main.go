// Command airlock pushes images to an Airlock registry (README, The airlock
// CLI): from an OCI layout, a `docker save` tarball or the local Docker
// daemon (push), or from any registry (copy). Blobs the destination has are
// skipped (HEAD) or mounted from another repository of the registry
// (--mount-from; copy within one registry mounts from the source); the
// others go straight to S3 with presigned part URLs when the registry
// advertises direct uploads (Airlock-Direct-Upload: parts), else through the
// standard upload API. An interrupted direct upload is resumed from a state
// file (state.go). Credentials come from the Docker config and its
// credential helpers (authn.DefaultKeychain: credsStore, credHelpers,
// docker-credential-* on PATH), so `docker login` works for it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"

	"github.com/google/go-containerregistry/pkg/name"
)

const mib = 1 << 20

// usageError is a bad command line (exit status 2, usage printed).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

const topUsage = `airlock: push images to an Airlock registry

Usage:
  airlock push [flags] SRC DST   push a local image: oci:<dir>[:tag], docker-archive:<file>[:tag],
                                 docker-daemon:<image>[:tag]
  airlock copy [flags] SRC DST   copy an image (or a multi-platform index) from any registry
  airlock help [command]         this text, or a command's flags

Layers go straight to S3 when the registry is an Airlock offering direct uploads
(no size limit), else through the standard upload API. Layers the destination
has are skipped; an interrupted push resumes where it stopped when run again.
Credentials: the Docker config (docker login, credential helpers).

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
	// stateDir holds the resume state ("": resuming off).
	stateDir string
}

func (o *options) register(fs *flag.FlagSet) {
	fs.BoolVar(&o.insecure, "insecure", false, "talk plain http to the registries (loopback and private addresses use http anyway)")
	fs.IntVar(&o.jobs, "jobs", 4, "blobs uploaded in parallel")
	fs.IntVar(&o.parts, "parts", 4, "parts of one blob sent to S3 in parallel (direct uploads; memory: jobs × parts × part size)")
	fs.Func("part-size", "direct-upload part size in MiB (5 to 5120; default: the registry's choice, 16 MiB)", func(v string) error {
		ps, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ps < 5 || ps > 5120 {
			return fmt.Errorf("part size %q: want MiB from 5 to 5120", v)
		}
		o.partSize = ps * mib
		return nil
	})
	fs.BoolVar(&o.quiet, "quiet", false, "no progress output (bars on a terminal, else a line per part)")
	o.stateDir = defaultStateDir()
	fs.StringVar(&o.stateDir, "state-dir", o.stateDir, "where interrupted direct uploads are recorded, to resume them on the next run")
	fs.BoolFunc("no-resume", "neither resume interrupted uploads nor record them", func(string) error {
		o.stateDir = ""
		return nil
	})
}

// run is the command line without the process (tests call it).
func run(ctx context.Context, args []string, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, topUsage)
		return usageError{"a command is required: push or copy"}
	}
	cmd, args := args[0], args[1:]
	if cmd == "help" && len(args) == 1 {
		cmd, args = args[0], []string{"--help"}
	}
	var srcHelp string
	switch cmd {
	case "push":
		srcHelp = `SRC is a local image:
  oci:<dir>[:tag]               an OCI image layout (the tag is its org.opencontainers.image.ref.name;
                                without one the layout must hold a single image or index)
  docker-archive:<file>[:tag]   a 'docker save' tarball (the tag, e.g. app:1, picks one of several images)
  docker-daemon:<image>[:tag]   an image of the local Docker daemon, read with 'docker save'
                                into a temporary file (docker on PATH; DOCKER_HOST is honoured)
DST is a registry reference, e.g. registry.example.com/team/app:1

Blobs the destination lacks are mounted from the --mount-from repositories when
they have them. A push that was interrupted (killed, network lost) resumes its
direct uploads when run again: the parts S3 acknowledged are not sent again.`
	case "copy":
		srcHelp = `SRC is an image in any registry (e.g. docker.io/library/alpine:3.20, an index copies
every platform), DST a registry reference, e.g. registry.example.com/team/app:1.
Within one registry, blobs are mounted from SRC's repository (no bytes move).
Interrupted direct uploads resume when run again.`
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
	var mountFrom []string
	if cmd == "push" {
		fs.Func("mount-from", "a repository of the destination registry to mount missing blobs from (repeatable), e.g. team/base", func(v string) error {
			if v == "" {
				return errors.New("a repository name is required")
			}
			mountFrom = append(mountFrom, v)
			return nil
		})
	}
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
	if _, err := name.ParseReference(dst); err != nil {
		return usageError{fmt.Sprintf("destination %q: %v", dst, err)}
	}
	var s source
	var err error
	if cmd == "push" {
		s, err = localSource(ctx, src)
	} else {
		s, err = remoteSource(ctx, src, o.insecure)
	}
	if err != nil {
		return err
	}
	defer s.close()
	if cmd == "copy" && s.ref != nil {
		if d, err := name.ParseReference(dst); err == nil && d.Context().RegistryStr() == s.ref.Context().RegistryStr() {
			mountFrom = append(mountFrom, s.ref.Context().RepositoryStr())
		}
	}
	prog := newProgress(stderr, o.quiet)
	p, err := newPusher(ctx, dst, o, mountFrom, prog)
	if err != nil {
		prog.close()
		return err
	}
	err = p.push(ctx, s)
	prog.close()
	if err != nil {
		return err
	}
	if !o.quiet {
		fmt.Fprintln(stderr, p.summary())
	}
	return nil
}
