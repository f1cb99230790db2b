package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Requests to the registry, their errors, and the readers that count and
// report the bytes sent.

// maxAnswer bounds the answer read by do: above the largest a front door
// returns (Lambda: 6 MB). An answer of 1,000 part URLs is 1-2 MB on AWS,
// where each presigned URL carries the function's session token.
const maxAnswer = 8 * mib

// do sends a request to the registry and reads the answer (up to maxAnswer).
// Every request it sends but DELETE is safe to repeat, so transient
// failures are retried (send): HEAD; POST opening a session (a second one
// expires unused); POST asking part URLs (the same plan answers the same
// URLs); PUT of a manifest (the same bytes); PUT completing a direct
// upload (a completed session answers 201 or 202 again). The body is
// bytes, sent again whole. DELETE cancels a session, best effort.
func (p *pusher) do(ctx context.Context, method, u string, body []byte, hdr ...string) (*http.Response, []byte, error) {
	var retryOn func(int) bool
	if method != http.MethodDelete {
		retryOn = retryableStatus
	}
	res, err := p.send(ctx, p.client, retryOn, func() (*http.Request, error) {
		var r io.Reader
		if body != nil {
			r = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, u, r)
		if err != nil {
			return nil, err
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		return req, nil
	})
	if err != nil {
		return nil, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, maxAnswer))
	return res, b, err
}

// statusError describes an unexpected answer, with the registry's message.
func statusError(what, method, u string, res *http.Response, body []byte) error {
	msg := string(bytes.TrimSpace(body))
	var e struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	if json.Unmarshal(body, &e) == nil && len(e.Errors) > 0 {
		msg = e.Errors[0].Code + ": " + e.Errors[0].Message
	}
	if len(msg) > 500 {
		msg = msg[:500] + "…"
	}
	if res.StatusCode == http.StatusUnauthorized || res.StatusCode == http.StatusForbidden && msg == "" {
		host := ""
		if x, err := url.Parse(u); err == nil {
			host = x.Host
		}
		msg = strings.TrimPrefix(msg+"; check the credentials for push (docker login "+host+")", "; ")
	}
	if hint := giveUp(res.StatusCode); hint != "" {
		msg = strings.TrimPrefix(msg+"; "+hint, "; ")
	}
	return &registryError{Status: res.StatusCode, msg: fmt.Sprintf("%s: %s %s answered %s: %s", what, method, redact(u), res.Status, msg)}
}

// registryError is an unexpected answer of the registry.
type registryError struct {
	Status int
	msg    string
}

func (e *registryError) Error() string { return e.msg }

// progressReader reports the bytes read to prog every step bytes.
type progressReader struct {
	r          io.Reader
	prog       progress
	d          v1.Hash
	size, step int64
	pending    int64
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.pending += int64(n)
	if p.pending >= p.step {
		p.prog.sent(p.d, p.size, p.pending)
		p.pending = 0
	}
	return n, err
}

// countReader counts the bytes read into *n.
type countReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n.Add(int64(n))
	return n, err
}

// redact drops the query (presigned signatures) from u.
func redact(u string) string {
	if x, err := url.Parse(u); err == nil && x.RawQuery != "" {
		x.RawQuery = "…"
		return x.String()
	}
	return u
}

func (p *pusher) resolve(loc string) (string, error) {
	if loc == "" {
		return "", errors.New("the registry answered no Location")
	}
	b, _ := url.Parse(p.base + "/")
	x, err := url.Parse(loc)
	if err != nil {
		return "", err
	}
	return b.ResolveReference(x).String(), nil
}

func withQuery(u string, kv ...string) string {
	x, err := url.Parse(u)
	if err != nil {
		return u
	}
	q := x.Query()
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	x.RawQuery = q.Encode()
	return x.String()
}
