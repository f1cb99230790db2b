package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/airlock-registry/airlock/localdev/harness"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// -dynamo-addr and -s3-addr serve the emulators at fixed addresses (what
// localdev/sam-env.json points sam local at): the ready line names them and
// the table, the bucket and a presigned URL work through them.
func TestFixedEmulatorAddrs(t *testing.T) {
	dAddr, sAddr := freeAddr(t), freeAddr(t)
	bin := buildLocaldev(t)
	s := startLocaldev(t, bin, "-emulators-only", "-data", t.TempDir(), "-dynamo-addr", dAddr, "-s3-addr", sAddr)
	defer s.stop(t)
	env := map[string]string{}
	for _, kv := range strings.Fields(strings.TrimPrefix(s.readyLine, "emulators ready: ")) {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	if env["AIRLOCK_DYNAMODB_ENDPOINT"] != "http://"+dAddr || env["AIRLOCK_S3_ENDPOINT"] != "http://"+sAddr {
		t.Fatalf("ready line %q: want the endpoints http://%s and http://%s", s.readyLine, dAddr, sAddr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := harness.DynamoClient(ctx, "http://"+dAddr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(env["AIRLOCK_TABLE"])}); err != nil {
		t.Fatalf("table through %s: %v", dAddr, err)
	}
	s3c := harness.S3Client("http://" + sAddr)
	if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(env["AIRLOCK_BUCKET"]), Key: aws.String("k"),
		Body: strings.NewReader("relayed")}); err != nil {
		t.Fatalf("put through %s: %v", sAddr, err)
	}
	req, err := s3.NewPresignClient(s3c).PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(env["AIRLOCK_BUCKET"]), Key: aws.String("k")})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(req.URL, "http://"+sAddr+"/") {
		t.Fatalf("presigned URL %s is not on %s", req.URL, sAddr)
	}
	res, err := httpGet(req.URL)
	if err != nil || res != "relayed" {
		t.Fatalf("presigned GET through %s: %q %v", sAddr, res, err)
	}
}

// sam-env.json points the function at the fixed addresses the README's
// `localdev -emulators-only -dynamo-addr 127.0.0.1:8000 -s3-addr 127.0.0.1:9000` serves.
func TestSamEnvEndpoints(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("sam-env.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]map[string]string
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	fn := doc["ApiFunction"]
	for k, want := range map[string]string{
		"AIRLOCK_DYNAMODB_ENDPOINT": "http://127.0.0.1:8000", "AIRLOCK_S3_ENDPOINT": "http://127.0.0.1:9000",
		"AIRLOCK_TABLE": harness.Table, "AIRLOCK_BUCKET": harness.Bucket,
	} {
		if fn[k] != want {
			t.Errorf("sam-env.json: ApiFunction.%s = %q, want %q", k, fn[k], want)
		}
	}
}

func httpGet(url string) (string, error) {
	res, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("status %d", res.StatusCode)
	}
	return string(b), err
}
