package lambda_test

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// request is one HTTP request to turn into an API Gateway v2 event.
type request struct {
	method string
	// target is the path with an optional query ("/v2/x/blobs/uploads/?digest=...").
	target string
	// header holds name/value pairs; a repeated name is joined with ","
	// as API Gateway does for multi-value headers.
	header []string
	body   []byte
}

// frontDoor is what turns HTTP requests into events (template.yaml,
// parameter FrontDoor): its event template and the host clients address.
type frontDoor struct {
	name     string // AIRLOCK_FRONT_DOOR
	template string // in testdata
	host     string
}

var (
	// httpAPI: API Gateway HTTP API, payload 2.0, $default route and stage.
	httpAPI = frontDoor{name: "HttpApi", template: "event-template.json", host: "abcdef1234.execute-api.us-east-1.amazonaws.com"}
	// functionURL: a Lambda function URL with auth type NONE. The same
	// payload 2.0 as the HTTP API, with what AWS puts in it instead: the
	// domainName <url-id>.lambda-url.<region>.on.aws (host header alike),
	// accountId "anonymous" and no authorizer (auth NONE), routeKey and stage
	// "$default", a UUID requestId, the x-amzn-tls-* headers
	// (https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html,
	// "Request payload format").
	functionURL = frontDoor{name: "FunctionUrl", template: "function-url-event-template.json", host: "k3xq7vbz2nw4hyl6fd5jtc8mra0pseu1.lambda-url.us-east-1.on.aws"}
)

// event builds the HTTP API event of req (httpAPI.event).
func event(t testing.TB, req request) []byte {
	t.Helper()
	return httpAPI.event(t, req)
}

// event builds the event the front door sends for req, from its testdata
// template: header names lower-cased, repeated headers comma-joined, no
// cookies, rawPath and rawQueryString as sent, queryStringParameters
// decoded, a body base64 encoded with isBase64Encoded true (binary media).
func (d frontDoor) event(t testing.TB, req request) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", d.template))
	if err != nil {
		t.Fatal(err)
	}
	var ev map[string]any
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatal(err)
	}
	path, query, _ := strings.Cut(req.target, "?")
	ev["rawPath"], ev["rawQueryString"] = path, query
	if query != "" {
		params := map[string]string{}
		for _, kv := range strings.Split(query, "&") {
			k, v, _ := strings.Cut(kv, "=")
			if old, ok := params[k]; ok {
				v = old + "," + v
			}
			params[k] = v
		}
		ev["queryStringParameters"] = params
	}
	rc := ev["requestContext"].(map[string]any)
	h := rc["http"].(map[string]any)
	h["method"], h["path"] = req.method, path
	headers := ev["headers"].(map[string]any)
	for i := 0; i+1 < len(req.header); i += 2 {
		k := strings.ToLower(req.header[i])
		if old, ok := headers[k]; ok && k != "content-length" {
			headers[k] = old.(string) + "," + req.header[i+1]
		} else {
			headers[k] = req.header[i+1]
		}
	}
	headers["content-length"] = strconv.Itoa(len(req.body))
	if req.body != nil {
		ev["body"] = base64.StdEncoding.EncodeToString(req.body)
		ev["isBase64Encoded"] = true
	}
	out, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// testdataEvent reads a complete event from testdata.
func testdataEvent(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// do sends req through the suite's function (behind the HTTP API).
func do(t testing.TB, req request) response {
	t.Helper()
	return suite.fn.do(t, req)
}

// do sends req through fn, as an event of its front door.
func (fn *function) do(t testing.TB, req request) response {
	t.Helper()
	return fn.invoke(t, fn.door.event(t, req))
}

func wantStatus(t testing.TB, what string, r response, status int) {
	t.Helper()
	if r.StatusCode != status {
		t.Fatalf("%s: got %s, want status %d\nemulator output:\n%s", what, r, status, tail(suite.fn.out.String(), 2000))
	}
	if v := r.header("Docker-Distribution-API-Version"); v != "registry/2.0" {
		t.Errorf("%s: Docker-Distribution-API-Version = %q", what, v)
	}
}

func wantHeader(t testing.TB, what string, r response, name, want string) {
	t.Helper()
	if got := r.header(name); got != want {
		t.Fatalf("%s: %s = %q, want %q (%s)", what, name, got, want, r)
	}
}
