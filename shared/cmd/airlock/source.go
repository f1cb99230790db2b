package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// source is the image or index to push (one of the two is set).
type source struct {
	img v1.Image
	idx v1.ImageIndex
	// ref is the registry reference of a copy's source.
	ref name.Reference
	// cleanup removes what reading the source made (docker save's file).
	cleanup func()
}

func (s source) close() {
	if s.cleanup != nil {
		s.cleanup()
	}
}

// splitTag splits "<path>[:tag]" where the tag may hold colons and slashes
// (app:1, example.com/app:1): path is s when s exists, else the longest
// prefix up to a colon that exists (a directory when dir, else a file);
// without one, what precedes the last colon followed by no slash (the
// error then names a path that does not exist).
func splitTag(s string, dir bool) (path, tag string) {
	if _, err := os.Stat(s); err == nil {
		return s, ""
	}
	for i := len(s) - 1; i > 0; i-- {
		if s[i] != ':' {
			continue
		}
		if fi, err := os.Stat(s[:i]); err == nil && fi.IsDir() == dir {
			return s[:i], s[i+1:]
		}
	}
	if i := strings.LastIndexByte(s, ':'); i > 0 && !strings.Contains(s[i+1:], "/") {
		return s[:i], s[i+1:]
	}
	return s, ""
}

// localSource opens oci:<dir>[:tag], docker-archive:<file>[:tag] or
// docker-daemon:<image>[:tag].
func localSource(ctx context.Context, src string) (source, error) {
	kind, rest, ok := strings.Cut(src, ":")
	if !ok || rest == "" || kind != "oci" && kind != "docker-archive" && kind != "docker-daemon" {
		return source{}, usageError{fmt.Sprintf("source %q: want oci:<dir>[:tag], docker-archive:<file>[:tag] or docker-daemon:<image>[:tag]", src)}
	}
	if kind == "docker-daemon" {
		return daemonSource(ctx, src, rest)
	}
	if kind == "docker-archive" {
		return archiveSource(src, rest)
	}
	path, tag := splitTag(rest, true)
	ii, err := layout.ImageIndexFromPath(path)
	if err != nil {
		return source{}, fmt.Errorf("source %q: not an OCI layout: %w", src, err)
	}
	im, err := ii.IndexManifest()
	if err != nil {
		return source{}, fmt.Errorf("source %q: %w", src, err)
	}
	var pick []v1.Descriptor
	var tags []string
	for _, d := range im.Manifests {
		ref := d.Annotations["org.opencontainers.image.ref.name"]
		if ref != "" {
			tags = append(tags, ref)
		}
		if tag == "" || ref == tag {
			pick = append(pick, d)
		}
	}
	switch {
	case len(pick) == 0:
		return source{}, fmt.Errorf("source %q: no image tagged %q in the layout (tags: %s)", src, tag, strings.Join(tags, ", "))
	case len(pick) > 1:
		return source{}, fmt.Errorf("source %q: the layout holds %d images: name one with oci:%s:<tag> (tags: %s)", src, len(pick), path, strings.Join(tags, ", "))
	}
	d := pick[0]
	switch {
	case d.MediaType.IsIndex():
		idx, err := ii.ImageIndex(d.Digest)
		return source{idx: idx}, wrap(src, err)
	case d.MediaType.IsImage():
		img, err := ii.Image(d.Digest)
		return source{img: img}, wrap(src, err)
	}
	return source{}, fmt.Errorf("source %q: %s has media type %q, neither an image nor an index", src, d.Digest, d.MediaType)
}

// archiveSource opens docker-archive:<file>[:<name:tag>] (splitTag: the
// tag is a Docker reference, colons included).
func archiveSource(src, rest string) (source, error) {
	path, tag := splitTag(rest, false)
	fi, err := os.Stat(path)
	if err != nil {
		return source{}, fmt.Errorf("source %q: %w", src, err)
	}
	if fi.IsDir() {
		return source{}, fmt.Errorf("source %q: %s is a directory: docker-archive: names a 'docker save' tarball (an OCI layout directory is oci:%s)", src, path, path)
	}
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(path) })
	if err != nil {
		return source{}, fmt.Errorf("source %q: not a complete 'docker save' tarball (%w): make it again with docker save -o %s <image>", src, err, path)
	}
	var tags []string
	for _, d := range m {
		tags = append(tags, d.RepoTags...)
	}
	var tp *name.Tag
	if tag != "" {
		t, err := name.NewTag(tag)
		if err != nil {
			return source{}, usageError{fmt.Sprintf("source %q: tag %q: %v", src, tag, err)}
		}
		tp = &t
	} else if len(m) > 1 {
		return source{}, fmt.Errorf("source %q: the tarball holds %d images: name one with docker-archive:%s:<name:tag> (tags: %s)", src, len(m), path, strings.Join(tags, ", "))
	}
	img, err := tarball.ImageFromPath(path, tp)
	if err == nil {
		_, err = img.Manifest()
	}
	if err != nil && tp != nil && strings.Contains(err.Error(), "not found in tarball") {
		return source{}, fmt.Errorf("source %q: no image tagged %q in the tarball (tags: %s)", src, tag, strings.Join(tags, ", "))
	}
	if err != nil {
		return source{}, fmt.Errorf("source %q: not a complete 'docker save' tarball (%w): make it again with docker save -o %s <image>", src, err, path)
	}
	return source{img: img}, nil
}

func wrap(src string, err error) error {
	if err != nil {
		return fmt.Errorf("source %q: %w", src, err)
	}
	return nil
}

// remoteSource reads ref from its registry (an index stays an index).
func remoteSource(ctx context.Context, ref string, insecure bool) (source, error) {
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return source{}, usageError{fmt.Sprintf("source %q: %v", ref, err)}
	}
	desc, err := remote.Get(r, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain), remote.WithTransport(registryTransport()))
	if err != nil {
		return source{}, fmt.Errorf("source %s: %w", ref, err)
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		return source{idx: idx, ref: r}, wrap(ref, err)
	}
	img, err := desc.Image()
	return source{img: img, ref: r}, wrap(ref, err)
}

// daemonSource saves image from the local Docker daemon (`docker save`, the
// docker CLI on PATH, DOCKER_HOST and the CLI's context honoured) into a
// temporary file and reads it as a docker-archive; the file goes at close.
func daemonSource(ctx context.Context, src, image string) (source, error) {
	docker, err := exec.LookPath("docker")
	if err != nil {
		return source{}, fmt.Errorf("source %q: the docker CLI is not on PATH (%v): install it, or 'docker save' the image elsewhere and push docker-archive:<file>", src, err)
	}
	dir, err := os.MkdirTemp("", "airlock-docker-save-")
	if err != nil {
		return source{}, fmt.Errorf("source %q: %w", src, err)
	}
	cleanup := func() { _ = os.RemoveAll(dir) }
	file := filepath.Join(dir, "image.tar")
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, docker, "save", "-o", file, image)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		cleanup()
		return source{}, fmt.Errorf("source %q: docker save %s: %v: %s", src, image, err, strings.TrimSpace(stderr.String()))
	}
	// One image was saved: no tag to pick (an image ID has none).
	img, err := tarball.ImageFromPath(file, nil)
	if err == nil {
		_, err = img.Manifest()
	}
	if err != nil {
		cleanup()
		return source{}, fmt.Errorf("source %q: read docker save's archive: %w", src, err)
	}
	return source{img: img, cleanup: cleanup}, nil
}
