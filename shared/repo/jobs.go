package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// RunFill resumes one parked fill (the proxyfetch function's async event).
func (s *Set) RunFill(ctx context.Context, job FillJob) error {
	p, ok := s.repos[job.Repo].(*Proxy)
	if !ok {
		return fmt.Errorf("fill job for %q: not a proxy repository", job.Repo)
	}
	if err := job.Digest.Validate(); err != nil {
		return fmt.Errorf("fill job: %w", err)
	}
	return p.Resume(ctx, job)
}

// RetryFills resumes every parked fill of every proxy (the proxyfetch
// function's schedule), one after another, until ctx ends. It returns how
// many it ran.
func (s *Set) RetryFills(ctx context.Context) (int, error) {
	n := 0
	var errs []error
	for _, p := range s.Proxies() {
		jobs, err := p.pendingJobs(ctx)
		if err != nil {
			return n, err
		}
		for _, j := range jobs {
			if ctx.Err() != nil {
				return n, errors.Join(append(errs, ctx.Err())...)
			}
			n++
			if err := p.Resume(ctx, j); err != nil {
				errs = append(errs, fmt.Errorf("fill %s of %s/%s: %w", j.Digest, j.Repo, j.Image, err))
			}
		}
	}
	return n, errors.Join(errs...)
}

// FetchEvent is the proxyfetch function's input: a FillJob (async invoke
// from the api function) or anything else (the schedule: retry every
// parked fill).
func (s *Set) FetchEvent(ctx context.Context, raw json.RawMessage) error {
	var job FillJob
	if err := json.Unmarshal(raw, &job); err == nil && job.Repo != "" && job.Digest != "" {
		return s.RunFill(ctx, job)
	}
	n, err := s.RetryFills(ctx)
	s.deps.Logger.InfoContext(ctx, "parked fills retried", "count", n, "err", err)
	return err
}
