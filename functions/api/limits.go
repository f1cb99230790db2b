package main

import (
	"fmt"
	"os"
	"strconv"
)

// The AWS front door (README, Architecture: Front-door limits): a synchronous
// Lambda invoke carries at most 6 MiB + 100 bytes of request and of response
// JSON (Lambda's and the runtime interface emulator's limit, 6291556 bytes).
// Binary request bodies arrive base64-encoded inside the API Gateway v2 event.
const (
	// lambdaPayloadLimit is the largest invoke request or response, in bytes.
	lambdaPayloadLimit = 6<<20 + 100
	// envelopeAllowance is left in a request event for everything but the
	// body: requestContext and headers (API Gateway caps the request line and
	// headers at 10 KB; JSON escaping can grow them).
	envelopeAllowance = 16 << 10
	// defaultMaxBody is the largest raw request body the function accepts:
	// its base64 form (4 bytes per 3) plus envelopeAllowance fits the invoke
	// payload. tests/lambda measures the largest raw PATCH the runtime
	// interface emulator accepts with a realistic event and checks that this
	// default passes and is within envelopeAllowance of it.
	defaultMaxBody = (lambdaPayloadLimit - envelopeAllowance) / 4 * 3
	// responseBodyLimit bounds a manifest body sent inline (once escaped into
	// the response JSON); longer ones are redirected to S3.
	responseBodyLimit = lambdaPayloadLimit - envelopeAllowance
)

// maxBody reads AIRLOCK_MAX_BODY (bytes; unset or empty: defaultMaxBody).
// It may only lower the limit: a body over defaultMaxBody never reaches the function.
func maxBody() (int64, error) {
	v := os.Getenv("AIRLOCK_MAX_BODY")
	if v == "" {
		return defaultMaxBody, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 || n > defaultMaxBody {
		return 0, fmt.Errorf("AIRLOCK_MAX_BODY=%q: want a byte count in 1..%d (Lambda's invoke payload limit)", v, defaultMaxBody)
	}
	return n, nil
}
