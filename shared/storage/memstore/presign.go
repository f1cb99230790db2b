package memstore

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Query parameters of a presigned URL, named as S3's.
const (
	paramDate        = "X-Amz-Date"    // signing time, 20060102T150405Z
	paramExpires     = "X-Amz-Expires" // seconds after X-Amz-Date
	paramSignature   = "X-Amz-Signature"
	paramContentType = "response-content-type"
	amzDate          = "20060102T150405Z"
)

// PresignGet returns a URL serving the object at key for ttl (rounded up to
// the second, as S3's X-Amz-Expires) from the store's loopback HTTP server.
func (s *Store) PresignGet(_ context.Context, key string, ttl time.Duration) (string, error) {
	return s.presign(key, "", ttl)
}

// PresignManifest returns a URL serving a stored manifest body for ttl with
// mediaType as the response's Content-Type.
func (s *Store) PresignManifest(_ context.Context, key, mediaType string, ttl time.Duration) (string, error) {
	return s.presign(key, mediaType, ttl)
}

// presign signs key, the response content type and the validity window with
// the store's HMAC key.
func (s *Store) presign(key, contentType string, ttl time.Duration) (string, error) {
	if ttl <= 0 {
		return "", fmt.Errorf("presign %s: ttl %v is not positive", key, ttl)
	}
	base, err := s.server()
	if err != nil {
		return "", fmt.Errorf("presign %s: %w", key, err)
	}
	date := s.now().UTC().Format(amzDate)
	expires := strconv.FormatInt(int64((ttl+time.Second-1)/time.Second), 10)
	q := url.Values{}
	q.Set(paramDate, date)
	q.Set(paramExpires, expires)
	if contentType != "" {
		q.Set(paramContentType, contentType)
	}
	q.Set(paramSignature, s.sign(key, date, expires, contentType))
	return base + (&url.URL{Path: "/" + key}).EscapedPath() + "?" + q.Encode(), nil
}

// sign returns the hex HMAC-SHA256 of a presigned GET's signed fields.
func (s *Store) sign(key, date, expires, contentType string) string {
	return s.signFields(http.MethodGet, key, date, expires, contentType)
}

// signFields returns the hex HMAC-SHA256 of a presigned request's method
// and signed fields (each NUL-terminated, after their count).
func (s *Store) signFields(fields ...string) string {
	mac := hmac.New(sha256.New, s.secret)
	mac.Write([]byte(strconv.Itoa(len(fields))))
	for _, f := range fields {
		mac.Write([]byte{0})
		mac.Write([]byte(f))
	}
	return hex.EncodeToString(mac.Sum(nil))
}

// signatureOK tells whether sig (hex) signs fields.
func (s *Store) signatureOK(sig string, fields ...string) bool {
	got, err := hex.DecodeString(sig)
	want, _ := hex.DecodeString(s.signFields(fields...)) // our own hex
	return err == nil && hmac.Equal(got, want)
}

// presignLive tells whether a presigned URL signed at date for expires seconds is still valid.
func (s *Store) presignLive(date, expires string) bool {
	signed, err1 := time.Parse(amzDate, date)
	secs, err2 := strconv.ParseInt(expires, 10, 64)
	return err1 == nil && err2 == nil && s.now().Before(signed.Add(time.Duration(secs)*time.Second))
}

// server returns the base URL of the presign server, starting it on a free
// loopback port on first use.
func (s *Store) server() (string, error) {
	s.srvMu.Lock()
	defer s.srvMu.Unlock()
	if s.closed {
		return "", errors.New("memstore: store closed")
	}
	if s.srv != nil {
		return s.base, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("start presign server: %w", err)
	}
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve), ReadHeaderTimeout: 10 * time.Second}
	s.base = "http://" + ln.Addr().String()
	go func(srv *http.Server) { _ = srv.Serve(ln) }(s.srv) // returns ErrServerClosed on Close
	return s.base, nil
}

// serve answers GET and HEAD of a presigned URL as S3 does: 403 for a
// signature that does not match the key and parameters or has expired, 404
// for a missing object, else the bytes (Range supported) with the signed
// Content-Type (default application/octet-stream).
func (s *Store) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPut && r.URL.Query().Has(paramUploadID) {
		s.servePart(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		s3Error(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "presigned for GET")
		return
	}
	key := strings.TrimPrefix(r.URL.Path, "/")
	q := r.URL.Query()
	date, expires, ct := q.Get(paramDate), q.Get(paramExpires), q.Get(paramContentType)
	if !s.signatureOK(q.Get(paramSignature), http.MethodGet, key, date, expires, ct) {
		s3Error(w, http.StatusForbidden, "SignatureDoesNotMatch", "the request signature does not match")
		return
	}
	if !s.presignLive(date, expires) {
		s3Error(w, http.StatusForbidden, "AccessDenied", "Request has expired")
		return
	}
	s.mu.Lock()
	b, ok := s.objects[key] // never modified once stored
	s.mu.Unlock()
	if !ok {
		s3Error(w, http.StatusNotFound, "NoSuchKey", "The specified key does not exist.")
		return
	}
	if ct == "" {
		ct = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ct)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
}

// s3Error writes an S3-style XML error.
func s3Error(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code><Message>%s</Message></Error>\n", code, msg)
}
