package repo

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/airlock-registry/airlock/shared/storage"
	"github.com/airlock-registry/airlock/shared/upstream"
)

// call runs one metadata call to the remote, bounded by UpstreamTimeout (and
// the request's own deadline), unless the remote is blocked. Failures that
// mean "the remote is down" count towards the auto-block; a success clears it.
func (p *Proxy) call(ctx context.Context, fn func(ctx context.Context) error) error {
	st, err := p.blockState(ctx)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, p.deps.Proxy.UpstreamTimeout)
	defer cancel()
	err = fn(cctx)
	p.observe(ctx, st, err)
	return err
}

// blockState reads the remote's failure record and refuses while it is blocked.
func (p *Proxy) blockState(ctx context.Context) (*storage.Marker, error) {
	m, err := p.meta.GetMarker(ctx, groupBlock, p.cfg.Name)
	if notFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the remote's state: %w", err)
	}
	if until := blockedUntil(m); until.After(p.now()) {
		wait := until.Sub(p.now()).Round(time.Second)
		return &m, &UnavailableError{
			Msg: fmt.Sprintf("upstream %s is blocked for %s after %d consecutive failures; only cached content is served until then",
				p.up.Remote(), wait, m.Count),
			RetryAfter: wait,
		}
	}
	return &m, nil
}

func blockedUntil(m storage.Marker) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, m.Value)
	return t
}

// down reports whether err means the remote could not serve at all.
func down(err error) bool { return upstream.IsKind(err, upstream.Unavailable) }

// observe records the outcome of a remote call in the failure record.
func (p *Proxy) observe(ctx context.Context, st *storage.Marker, err error) {
	ctx = context.WithoutCancel(ctx)
	if err == nil || !down(err) {
		if st != nil && (err == nil || !errors.Is(err, context.Canceled)) {
			if derr := p.meta.DeleteMarker(ctx, groupBlock, p.cfg.Name); derr != nil {
				p.deps.Logger.WarnContext(ctx, "clear the remote's failure record", "repo", p.cfg.Name, "err", derr)
			}
		}
		return
	}
	m := storage.Marker{Group: groupBlock, Key: p.cfg.Name, Count: 1}
	if st != nil {
		m.Count = st.Count + 1
	}
	o := p.deps.Proxy
	m.Until = p.now().Add(2*o.BlockMax + time.Hour)
	if m.Count >= o.BlockAfter {
		wait := o.BlockBase << min(m.Count-o.BlockAfter, 20)
		if wait > o.BlockMax || wait <= 0 {
			wait = o.BlockMax
		}
		m.Value = p.now().Add(wait).Format(time.RFC3339Nano)
		p.deps.Logger.WarnContext(ctx, "upstream blocked", "repo", p.cfg.Name, "remote", p.up.Remote(), "failures", m.Count, "for", wait, "err", err)
	} else {
		p.deps.Logger.WarnContext(ctx, "upstream failure", "repo", p.cfg.Name, "remote", p.up.Remote(), "failures", m.Count, "err", err)
	}
	if perr := p.meta.PutMarker(ctx, m); perr != nil {
		p.deps.Logger.WarnContext(ctx, "record the remote's failure", "repo", p.cfg.Name, "err", perr)
	}
}

// upErr turns a remote failure into the repository error the client sees;
// "not found" is remembered for negativeCacheTTL.
func (p *Proxy) upErr(ctx context.Context, err error, image, ref, what string) error {
	var ue *upstream.Error
	if !errors.As(err, &ue) {
		return err // blocked (*UnavailableError) or a storage failure
	}
	remote := p.up.Remote()
	switch ue.Kind {
	case upstream.NotFound, upstream.Denied:
		if ttl := p.cfg.NegativeTTL(); ttl > 0 {
			m := storage.Marker{Group: groupNeg + p.cfg.Name, Key: image + "@" + ref, Until: p.now().Add(ttl)}
			if perr := p.meta.PutMarker(context.WithoutCancel(ctx), m); perr != nil {
				p.deps.Logger.WarnContext(ctx, "remember a miss", "repo", p.cfg.Name, "err", perr)
			}
		}
		if ue.Kind == upstream.Denied {
			return &NotFoundError{Msg: fmt.Sprintf("%s %s: upstream %s refused access (HTTP %d): the repository does not exist there or needs credentials (set credentials on proxy %q)",
				what, refName(image, ref), remote, ue.Status, p.cfg.Name)}
		}
		return &NotFoundError{Msg: fmt.Sprintf("%s %s is not known to %s nor upstream at %s", what, refName(image, ref), p.cfg.Name, remote)}
	case upstream.RateLimited:
		return &RateLimitedError{
			Msg:        fmt.Sprintf("upstream %s rate-limits this registry (HTTP 429) and %s is not cached; retry later or set credentials on proxy %q", remote, refName(image, ref), p.cfg.Name),
			RetryAfter: ue.RetryAfter,
		}
	case upstream.Invalid:
		return &BadUpstreamError{Msg: fmt.Sprintf("upstream %s sent an unusable answer for %s %s: %v; nothing was cached", remote, what, refName(image, ref), ue.Err)}
	default:
		why := "is unreachable"
		if ue.Status != 0 {
			why = fmt.Sprintf("answered HTTP %d", ue.Status)
		}
		e := &UnavailableError{Msg: fmt.Sprintf("upstream %s %s and %s %s is not cached: %v", remote, why, what, refName(image, ref), ue.Err)}
		if s, perr := strconv.Atoi(ue.RetryAfter); perr == nil && s > 0 {
			e.RetryAfter = time.Duration(s) * time.Second
		}
		e.Timeout = ue.Status == 0 && ue.Err != nil && ue.Err.Error() == "timed out"
		return e
	}
}

// Status is a proxy's view of its remote (the admin status endpoint).
type Status struct {
	Name         string    `json:"name"`
	Remote       string    `json:"remote"`
	Failures     int       `json:"consecutiveFailures"`
	Blocked      bool      `json:"blocked"`
	BlockedUntil time.Time `json:"blockedUntil,omitzero"`
	PendingFills int       `json:"pendingFills"`
}

// Status reads the proxy's remote state.
func (p *Proxy) Status(ctx context.Context) (Status, error) {
	s := Status{Name: p.cfg.Name, Remote: p.up.Remote()}
	m, err := p.meta.GetMarker(ctx, groupBlock, p.cfg.Name)
	if err != nil && !notFound(err) {
		return s, err
	}
	if err == nil {
		s.Failures = m.Count
		if u := blockedUntil(m); u.After(p.now()) {
			s.Blocked, s.BlockedUntil = true, u
		}
	}
	jobs, err := p.pendingJobs(ctx)
	if err != nil {
		return s, err
	}
	s.PendingFills = len(jobs)
	return s, nil
}

// refName is image:tag or image@digest.
func refName(image, ref string) string {
	if strings.Contains(ref, ":") {
		return image + "@" + ref
	}
	if ref == "tags" {
		return image
	}
	return image + ":" + ref
}
