package awscount_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"

	"github.com/airlock-registry/airlock/shared/awscount"
)

// wire is an HTTP server that only counts the requests reaching it and the
// body bytes they carry; the first failFirst requests get a 500 so the SDK
// retries. It checks the counter against what really went over the wire.
type wire struct {
	reqs, bytes atomic.Int64
	failFirst   atomic.Int64
}

func (w *wire) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w.reqs.Add(1)
	var buf bytes.Buffer
	n, _ := buf.ReadFrom(r.Body)
	w.bytes.Add(n)
	if w.failFirst.Add(-1) >= 0 {
		rw.WriteHeader(http.StatusInternalServerError)
		return
	}
	if r.Header.Get("X-Amz-Target") != "" { // DynamoDB JSON protocol
		rw.Header().Set("Content-Type", "application/x-amz-json-1.0")
		rw.Write([]byte(`{"TableNames":[]}`))
		return
	}
	rw.Header().Set("ETag", `"e"`)
	rw.WriteHeader(http.StatusOK)
}

func TestCounter(t *testing.T) {
	w := &wire{}
	srv := httptest.NewServer(w)
	defer srv.Close()
	creds := credentials.NewStaticCredentialsProvider("k", "s", "")
	var c awscount.Counter
	s3c := s3.New(s3.Options{
		Region: "us-east-1", Credentials: creds, BaseEndpoint: aws.String(srv.URL), UsePathStyle: true,
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		APIOptions:                 []func(*middleware.Stack) error{c.APIOption()},
	})
	db := dynamodb.New(dynamodb.Options{
		Region: "us-east-1", Credentials: creds, BaseEndpoint: aws.String(srv.URL),
		APIOptions: []func(*middleware.Stack) error{c.APIOption()},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	body := bytes.Repeat([]byte("x"), 1000)
	for range 3 {
		if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("b"), Key: aws.String("k"), Body: bytes.NewReader(body)}); err != nil {
			t.Fatalf("PutObject: %v", err)
		}
	}
	w.failFirst.Store(1) // one 500, then success: two attempts of one call
	if _, err := db.ListTables(ctx, &dynamodb.ListTablesInput{}); err != nil {
		t.Fatalf("ListTables: %v", err)
	}
	// Presigning sends nothing and must not count.
	if _, err := s3.NewPresignClient(s3c).PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("b"), Key: aws.String("k")}); err != nil {
		t.Fatalf("presign: %v", err)
	}

	got := c.Snapshot()
	if got["S3.PutObject"] != 3 || got["DynamoDB.ListTables"] != 2 || len(got) != 2 {
		t.Errorf("Snapshot = %v, want S3.PutObject:3 DynamoDB.ListTables:2", got)
	}
	if int64(c.Total()) != w.reqs.Load() {
		t.Errorf("Total = %d, server saw %d requests", c.Total(), w.reqs.Load())
	}
	if b := c.Bytes()["S3.PutObject"]; b != 3000 {
		t.Errorf("Bytes[S3.PutObject] = %d, want 3000", b)
	}
	var sum int64
	for _, v := range c.Bytes() {
		sum += v
	}
	if sum != w.bytes.Load() {
		t.Errorf("counted %d body bytes, server received %d", sum, w.bytes.Load())
	}

	c.Reset()
	if len(c.Snapshot()) != 0 || c.Total() != 0 {
		t.Errorf("after Reset: %v", c.Snapshot())
	}
	if _, err := db.ListTables(ctx, &dynamodb.ListTablesInput{}); err != nil {
		t.Fatalf("ListTables: %v", err)
	}
	if got := c.Snapshot(); got["DynamoDB.ListTables"] != 1 {
		t.Errorf("after Reset and one call: %v", got)
	}
}
