package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"syscall"
	"time"
)

// Retries of transient failures (README, airlock CLI): one policy for the
// registry's requests and the part PUTs to S3. A registry on Lambda behind
// API Gateway answers 429 when throttled and 502/503/504 on cold starts
// and gateway hiccups; a connection may be reset before any answer. Such a
// request is sent again, up to retryPolicy.attempts times in all, after an
// exponential backoff with jitter (or the answer's Retry-After, capped),
// but only when repeating it is harmless (see do and monolithic).

// retryPolicy is the retry policy of every request the CLI sends.
type retryPolicy struct {
	attempts      int           // sends in all, the first included
	base          time.Duration // the wait before the second send
	max           time.Duration // the longest backoff
	maxRetryAfter time.Duration // the longest Retry-After honoured
}

// retries is the policy (tests shorten its waits).
var retries = retryPolicy{attempts: 4, base: time.Second, max: 8 * time.Second, maxRetryAfter: 30 * time.Second}

// retryableStatus tells whether an answer of this status is transient.
func retryableStatus(code int) bool {
	switch code {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// retryableErr tells whether err, of a request that got no answer, is a
// connection failure (reset, refused, closed before the answer, network
// time-out), not the context's end, a TLS or a URL error.
func retryableErr(ctx context.Context, err error) bool {
	if ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var ne *net.OpError
	return errors.As(err, &ne)
}

// wait is the pause before send number try+1 (try ≥ 1): res's Retry-After
// (seconds or an HTTP date, at most maxRetryAfter) when it has one, else
// base·2^(try-1) (at most max) with jitter: a random half to all of it.
func (r retryPolicy) wait(try int, res *http.Response) time.Duration {
	if res != nil {
		if v := res.Header.Get("Retry-After"); v != "" {
			if s, err := strconv.Atoi(v); err == nil && s >= 0 {
				return min(time.Duration(s)*time.Second, r.maxRetryAfter)
			}
			if t, err := http.ParseTime(v); err == nil {
				return min(max(time.Until(t), 0), r.maxRetryAfter)
			}
		}
	}
	d := min(r.base<<(try-1), r.max)
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}

// pause waits d, or returns the context's error at once when it ends.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// send sends the request newReq makes (again for each attempt, so a body
// is re-read from its start) with client. When retryOn is set (the request
// is safe to repeat), a connection failure before the answer or an answer
// whose status retryOn accepts is retried by the policy, with a line on
// the progress output per retry. It returns the last answer (its body
// unread) or the last error, the error naming the attempts.
func (p *pusher) send(ctx context.Context, client *http.Client, retryOn func(code int) bool, newReq func() (*http.Request, error)) (*http.Response, error) {
	for try := 1; ; try++ {
		req, err := newReq()
		if err != nil {
			return nil, err
		}
		res, err := client.Do(req)
		last := try >= retries.attempts || retryOn == nil
		var why string
		switch {
		case err != nil && (last || !retryableErr(ctx, err)):
			if try > 1 {
				return nil, fmt.Errorf("%s %s: %w (after %d attempts: the registry or the network is down or overloaded: push again later; blobs already stored are skipped)", req.Method, redact(req.URL.String()), err, try)
			}
			return nil, fmt.Errorf("%s %s: %w", req.Method, redact(req.URL.String()), err)
		case err != nil:
			why = err.Error()
			if ue := (*url.Error)(nil); errors.As(err, &ue) {
				why = fmt.Sprintf("%v from %s %s", ue.Err, req.Method, redact(req.URL.String()))
			}
		case last || !retryOn(res.StatusCode):
			return res, nil
		default:
			why = fmt.Sprintf("%s from %s %s", res.Status, req.Method, redact(req.URL.String()))
			_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
			res.Body.Close()
		}
		d := retries.wait(try, res)
		p.stats.retries.Add(1)
		p.prog.logf("retrying in %s (attempt %d of %d): %s", d.Round(time.Millisecond), try+1, retries.attempts, why)
		if err := pause(ctx, d); err != nil {
			return nil, fmt.Errorf("%s %s: %w", req.Method, redact(req.URL.String()), err)
		}
	}
}

// giveUp is the way out added to an error of a transient status that the
// retries did not get past.
func giveUp(code int) string {
	if !retryableStatus(code) {
		return ""
	}
	return fmt.Sprintf("still after %d attempts: the registry is overloaded or unavailable: push again later (blobs already stored are skipped)", retries.attempts)
}
