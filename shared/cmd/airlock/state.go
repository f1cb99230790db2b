package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Resuming an interrupted push: while a direct upload runs, a state file
// records its session (the upload Location), its plan (size and part size)
// and the ETag of every part S3 has acknowledged. A later push of the same
// blob to the same repository reads it, asks the registry for fresh part
// URLs of that session with the same plan (the registry answers them for as
// long as the session lives, 24 hours idle) and sends only the parts
// without an ETag. The file goes when the registry has answered the
// completion; a session the registry no longer knows starts over. A lock
// file beside it (lockBlob) is held for the whole upload of the blob, so
// one process at a time owns a state file.

// uploadState is one state file (JSON).
type uploadState struct {
	Registry   string `json:"registry"`
	Repository string `json:"repository"`
	Digest     string `json:"digest"`
	Size       int64  `json:"size"`
	PartSize   int64  `json:"partSize"`
	Location   string `json:"location"`
	// ETags of the parts S3 acknowledged, by part number.
	ETags   map[int32]string `json:"etags"`
	Updated time.Time        `json:"updated"`
}

// stateFile is the state of one blob's direct upload, saved after every part.
type stateFile struct {
	path string // "": resuming is off, nothing is written
	mu   sync.Mutex
	st   uploadState
}

// defaultStateDir is $XDG_CACHE_HOME/airlock/uploads (~/.cache/... on Linux).
func defaultStateDir() string {
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "airlock", "uploads")
}

// openState reads the state of blob digest pushed to registry/repository
// from dir (dir "": resuming off). A missing, unreadable or foreign file
// yields an empty state for that blob.
func openState(dir, registry, repository, digest string, size int64) *stateFile {
	s := &stateFile{st: uploadState{Registry: registry, Repository: repository, Digest: digest, Size: size}}
	if dir == "" {
		return s
	}
	s.path = statePath(dir, registry, repository, digest) + ".json"
	b, err := os.ReadFile(s.path)
	if err != nil {
		return s
	}
	var st uploadState
	if json.Unmarshal(b, &st) == nil && st.Registry == registry && st.Repository == repository &&
		st.Digest == digest && st.Size == size && st.Location != "" && st.PartSize > 0 {
		s.st = st
	}
	return s
}

// statePath is the path, without extension, of the files of blob digest
// pushed to registry/repository under dir.
func statePath(dir, registry, repository, digest string) string {
	sum := sha256.Sum256([]byte(registry + "/" + repository + "@" + digest))
	return filepath.Join(dir, hex.EncodeToString(sum[:16]))
}

// lockPoll is how often a push waiting for another's lock tries again.
const lockPoll = 200 * time.Millisecond

// lockBlob takes the exclusive lock on blob digest of registry/repository
// (a "<state>.lock" file under dir, locked with flock where the system has
// it), so that two airlock processes (or two images of one push) that send
// the same blob to the same repository at once never share its state file:
// the second waits, calling waiting once, and then finds the blob present
// or resumes what the first left. dir "" (resuming off): no lock. The
// returned release drops the lock; waited tells whether it had to wait.
func lockBlob(ctx context.Context, dir, registry, repository, digest string, waiting func()) (release func(), waited bool, err error) {
	if dir == "" {
		return func() {}, false, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("resume state: %w (--state-dir names another place, --no-resume writes none)", err)
	}
	path := statePath(dir, registry, repository, digest) + ".lock"
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("resume state: %w (--state-dir names another place, --no-resume writes none)", err)
	}
	for {
		ok, err := tryLock(f)
		if err != nil {
			f.Close()
			return nil, false, fmt.Errorf("resume state: lock %s: %w (--no-resume takes no lock)", path, err)
		}
		if ok {
			return func() { unlock(f); f.Close() }, waited, nil
		}
		if !waited {
			waited = true
			waiting()
		}
		if err := pause(ctx, lockPoll); err != nil {
			f.Close()
			return nil, true, err
		}
	}
}

// resumable tells whether a previous run left a session to resume.
func (s *stateFile) resumable() bool { return s.st.Location != "" }

// begin records a new session and plan, forgetting any earlier parts.
func (s *stateFile) begin(location string, partSize int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Location, s.st.PartSize, s.st.ETags = location, partSize, map[int32]string{}
	return s.saveLocked()
}

// etag returns the recorded ETag of part n ("" if none).
func (s *stateFile) etag(n int32) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.ETags[n]
}

// sent records that S3 acknowledged part n with etag.
func (s *stateFile) sent(n int32, etag string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st.ETags == nil {
		s.st.ETags = map[int32]string{}
	}
	s.st.ETags[n] = etag
	return s.saveLocked()
}

// saveLocked writes the file atomically (a temporary file renamed over it).
func (s *stateFile) saveLocked() error {
	if s.path == "" {
		return nil
	}
	s.st.Updated = time.Now().UTC()
	b, err := json.Marshal(s.st)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("resume state: %w (--state-dir names another place, --no-resume writes none)", err)
	}
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("resume state: %w (--state-dir names another place, --no-resume writes none)", err)
	}
	return os.Rename(tmp, s.path)
}

// remove deletes the file (the upload ended, or its session is gone).
func (s *stateFile) remove() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Location, s.st.ETags = "", nil
	if s.path != "" {
		// A file left behind names a dead session: the next run starts over.
		if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.path = ""
		}
	}
}
