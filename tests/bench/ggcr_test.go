//go:build bench

package bench

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// ggcrRef is repo:tag on the registry at base (http://127.0.0.1:PORT).
func ggcrRef(base, repo, tag string) (name.Reference, error) {
	return name.ParseReference(strings.TrimPrefix(base, "http://")+"/"+repo+":"+tag, name.Insecure)
}

// ggcrPush pushes img with go-containerregistry's remote.Write: a HEAD per
// blob, then POST, one streamed PATCH and PUT ?digest= per blob (4 blobs at
// a time, the library's default), then the manifest.
func ggcrPush(ctx context.Context, base, repo, tag string, img v1.Image) error {
	ref, err := ggcrRef(base, repo, tag)
	if err != nil {
		return err
	}
	if err := remote.Write(ref, img, remote.WithContext(ctx)); err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	return nil
}

// ggcrPull fetches the manifest, the config and every layer (3 at a time,
// following blob redirects), verifying digests while reading. It returns the
// layer bytes read. opts are added to the remote options (a transport).
func ggcrPull(ctx context.Context, base, repo, tag string, opts ...remote.Option) (int64, error) {
	ref, err := ggcrRef(base, repo, tag)
	if err != nil {
		return 0, err
	}
	img, err := remote.Image(ref, append([]remote.Option{remote.WithContext(ctx)}, opts...)...)
	if err != nil {
		return 0, fmt.Errorf("pull %s: %w", ref, err)
	}
	if _, err := img.RawConfigFile(); err != nil {
		return 0, fmt.Errorf("pull %s: config: %w", ref, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return 0, fmt.Errorf("pull %s: %w", ref, err)
	}
	sizes := make([]int64, len(layers))
	errs := make([]error, len(layers))
	done := make(chan struct{})
	for i, l := range layers {
		go func() {
			defer func() { done <- struct{}{} }()
			rc, err := l.Compressed() // verifies size and digest at EOF
			if err != nil {
				errs[i] = err
				return
			}
			defer rc.Close()
			sizes[i], errs[i] = io.Copy(io.Discard, rc)
		}()
	}
	var total int64
	for range layers {
		<-done
	}
	for i := range layers {
		if errs[i] != nil {
			return 0, fmt.Errorf("pull %s: layer %d: %w", ref, i, errs[i])
		}
		total += sizes[i]
	}
	return total, nil
}
