package main

import (
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
// completion; a session the registry no longer knows starts over.

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
	sum := sha256.Sum256([]byte(registry + "/" + repository + "@" + digest))
	s.path = filepath.Join(dir, hex.EncodeToString(sum[:16])+".json")
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
