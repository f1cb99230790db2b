// Package awscount counts the AWS SDK calls a client sends, per service and
// operation, with a smithy middleware. It lets tests and benchmarks assert how
// many requests (and request-body bytes) a code path costs.
//
//	var c awscount.Counter
//	cl := s3.NewFromConfig(cfg, func(o *s3.Options) {
//		o.APIOptions = append(o.APIOptions, c.APIOption())
//	})
//	... // use cl
//	c.Snapshot()["S3.PutObject"] // number of PutObject requests sent
package awscount

import (
	"context"
	"maps"
	"sync"

	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Counter counts requests sent by every client it is attached to. The zero
// value is ready to use; it is safe for concurrent use.
//
// Requests are counted in the Deserialize step, right before the transport:
// every attempt (retries included) counts once, and presigning, which never
// sends a request, does not count.
type Counter struct {
	mu    sync.Mutex
	calls map[string]int
	bytes map[string]int64
}

// APIOption returns the option to append to s3.Options.APIOptions,
// dynamodb.Options.APIOptions or aws.Config.APIOptions.
func (c *Counter) APIOption() func(*middleware.Stack) error {
	return func(s *middleware.Stack) error {
		return s.Deserialize.Add(counting{c}, middleware.After)
	}
}

// Snapshot returns a copy of the counts, keyed "<service id>.<operation>",
// for example "S3.UploadPart" or "DynamoDB.GetItem".
func (c *Counter) Snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.calls)
}

// Bytes returns a copy of the request-body bytes sent, keyed like Snapshot.
// Operations whose requests had no body (or one of unknown length) are absent.
func (c *Counter) Bytes() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.bytes)
}

// Total returns the number of requests sent, all operations together.
func (c *Counter) Total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.calls {
		n += v
	}
	return n
}

// Reset forgets every count.
func (c *Counter) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = nil
	c.bytes = nil
}

func (c *Counter) add(key string, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.calls == nil {
		c.calls = map[string]int{}
		c.bytes = map[string]int64{}
	}
	c.calls[key]++
	if n > 0 {
		c.bytes[key] += n
	}
}

// counting is the middleware; one value per attached stack, all sharing c.
type counting struct{ c *Counter }

// ID names the middleware in the stack.
func (counting) ID() string { return "awscount.Counter" }

// HandleDeserialize records one request and its body length, then sends it.
func (m counting) HandleDeserialize(ctx context.Context, in middleware.DeserializeInput, next middleware.DeserializeHandler) (
	middleware.DeserializeOutput, middleware.Metadata, error,
) {
	var n int64
	if req, ok := in.Request.(*smithyhttp.Request); ok {
		if l, ok, err := req.StreamLength(); err == nil && ok {
			n = l
		} else if req.ContentLength > 0 {
			n = req.ContentLength
		}
	}
	m.c.add(middleware.GetServiceID(ctx)+"."+middleware.GetOperationName(ctx), n)
	return next.HandleDeserialize(ctx, in)
}
