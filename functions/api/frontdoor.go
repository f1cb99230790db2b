package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"
)

// Front doors (template.yaml, parameter FrontDoor; AIRLOCK_FRONT_DOOR).
const (
	// frontDoorHTTPAPI: API Gateway's HTTP API answers 503 after 30 s,
	// whatever the function's timeout (29 s): proxy fills keep their
	// configured budget (capped by the deadline) and hand off what is left.
	frontDoorHTTPAPI = "HttpApi"
	// frontDoorFunctionURL: a Lambda function URL waits as long as the
	// function runs (its timeout, up to 15 min): proxy fills may use the
	// request's whole deadline (repo.ProxyOptions.FillUntilDeadline).
	frontDoorFunctionURL = "FunctionUrl"
)

// frontDoor reads AIRLOCK_FRONT_DOOR (unset or empty: HttpApi).
func frontDoor() (string, error) {
	switch v := os.Getenv("AIRLOCK_FRONT_DOOR"); v {
	case "", frontDoorHTTPAPI:
		return frontDoorHTTPAPI, nil
	case frontDoorFunctionURL:
		return v, nil
	default:
		return "", fmt.Errorf("AIRLOCK_FRONT_DOOR=%q: want %s or %s", v, frontDoorHTTPAPI, frontDoorFunctionURL)
	}
}

// logRequests logs, at debug level only, what each request looks like to
// the registry handler once the adapter has made it an http.Request: the
// host it answers for (token realm, absolute Locations) and the deadline of
// the Lambda context (what proxy fills are bounded by). Nothing reaches the
// response. Without debug logging the handler is returned as it is.
func logRequests(h http.Handler, logger *slog.Logger, door string, fillUntilDeadline bool) http.Handler {
	if !logger.Enabled(context.Background(), slog.LevelDebug) {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attrs := []slog.Attr{
			slog.String("frontDoor", door),
			slog.String("method", r.Method),
			slog.String("host", r.Host),
			slog.String("path", r.URL.Path),
			slog.Bool("fillUntilDeadline", fillUntilDeadline),
		}
		if dl, ok := r.Context().Deadline(); ok {
			attrs = append(attrs, slog.Time("deadline", dl), slog.Int64("remainingMs", time.Until(dl).Milliseconds()))
		}
		logger.LogAttrs(r.Context(), slog.LevelDebug, "request", attrs...)
		h.ServeHTTP(w, r)
	})
}
