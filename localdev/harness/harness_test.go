package harness

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

func TestMain(m *testing.M) {
	code := m.Run()
	StopAll()
	os.Exit(code)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// The table the harness creates is exactly template.yaml's RegistryTable.
func TestTableDefinitionFromTemplate(t *testing.T) {
	def, err := TableDefinition()
	if err != nil {
		t.Fatal(err)
	}
	in, err := CreateTableInput(def, "x")
	if err != nil {
		t.Fatal(err)
	}
	if in.BillingMode != types.BillingModePayPerRequest {
		t.Errorf("billing mode %q, want PAY_PER_REQUEST", in.BillingMode)
	}
	var keys []string
	for _, k := range in.KeySchema {
		keys = append(keys, aws.ToString(k.AttributeName)+" "+string(k.KeyType))
	}
	if got := strings.Join(keys, ","); got != "pk HASH,sk RANGE" {
		t.Errorf("key schema %q, want pk HASH,sk RANGE", got)
	}
	for _, a := range in.AttributeDefinitions {
		if a.AttributeType != types.ScalarAttributeTypeS {
			t.Errorf("attribute %s has type %s, want S", aws.ToString(a.AttributeName), a.AttributeType)
		}
	}
	if def.TimeToLiveSpecification == nil || aws.ToString(def.TimeToLiveSpecification.AttributeName) != "expiresAt" {
		t.Errorf("TTL attribute: got %+v, want expiresAt", def.TimeToLiveSpecification)
	}
}

// Concurrent table creation is safe (goformation is not; go test -race).
func TestCreateTableConcurrently(t *testing.T) {
	t.Setenv(EnvDynamo, "dynalite")
	for i := range 4 {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			db, table := TestDynamo(t)
			out, err := db.DescribeTable(testCtx(t), &dynamodb.DescribeTableInput{TableName: aws.String(table)})
			if err != nil || out.Table.TableStatus != types.TableStatusActive {
				t.Fatalf("table %s: %v %+v", table, err, out)
			}
		})
	}
}

func TestRootFindsGoMod(t *testing.T) {
	root, err := Root()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(root + "/go.mod")
	if err != nil || !bytes.Contains(b, []byte("module github.com/airlock-registry/airlock")) {
		t.Fatalf("Root() = %s: go.mod unreadable or wrong module (%v)", root, err)
	}
}

// Round trip through the backends chosen by the environment (dynalite and
// versitygw by default; DynamoDB Local and MinIO in `make test-netns`).
func TestRoundTrip(t *testing.T) {
	ctx := testCtx(t)
	t.Logf("backends: %s, %s", DynamoBackend(), S3Backend())

	db, table := TestDynamo(t)
	checkDynamo(ctx, t, db, table)

	endpoint, bucket := TestS3(t)
	checkS3(ctx, t, endpoint, bucket)
}

func checkDynamo(ctx context.Context, t *testing.T, db *dynamodb.Client, table string) {
	t.Helper()
	// CreateTable is idempotent.
	if err := CreateTable(ctx, db, table); err != nil {
		t.Fatalf("second CreateTable: %v", err)
	}
	item := map[string]types.AttributeValue{
		"pk":    &types.AttributeValueMemberS{Value: "IMG#local/app"},
		"sk":    &types.AttributeValueMemberS{Value: "T#latest"},
		"value": &types.AttributeValueMemberS{Value: "sha256:abc"},
	}
	if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: item}); err != nil {
		t.Fatalf("PutItem: %v", err)
	}
	// A conditional create of the same key must lose.
	_, err := db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(table), Item: item,
		ConditionExpression: aws.String("attribute_not_exists(pk)"),
	})
	var ccf *types.ConditionalCheckFailedException
	if !errors.As(err, &ccf) {
		t.Fatalf("conditional PutItem on existing key: got %v, want ConditionalCheckFailedException", err)
	}
	out, err := db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(table), ConsistentRead: aws.Bool(true),
		Key: map[string]types.AttributeValue{"pk": item["pk"], "sk": item["sk"]},
	})
	if err != nil {
		t.Fatalf("GetItem: %v", err)
	}
	v, ok := out.Item["value"].(*types.AttributeValueMemberS)
	if !ok || v.Value != "sha256:abc" {
		t.Fatalf("GetItem value = %#v, want sha256:abc", out.Item["value"])
	}
}

func checkS3(ctx context.Context, t *testing.T, endpoint, bucket string) {
	t.Helper()
	c := S3Client(endpoint)
	if err := CreateBucket(ctx, c, bucket); err != nil {
		t.Fatalf("second CreateBucket: %v", err)
	}
	body := []byte("hello airlock")
	key := "blobs/sha256/ab/abcdef"
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	obj, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("GetObject: %v", err)
	}
	got, err := io.ReadAll(obj.Body)
	obj.Body.Close()
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("GetObject body = %q (%v), want %q", got, err, body)
	}
	_, err = c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("blobs/sha256/ab/missing")})
	var nf *s3types.NotFound
	if !errors.As(err, &nf) {
		t.Fatalf("HeadObject of a missing key: got %v, want NotFound", err)
	}

	// Presigned GET works, and the emulator rejects a tampered signature.
	ps, err := s3.NewPresignClient(c).PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)},
		s3.WithPresignExpires(time.Minute))
	if err != nil {
		t.Fatalf("presign: %v", err)
	}
	if status, b := httpGet(t, ps.URL); status != http.StatusOK || !bytes.Equal(b, body) {
		t.Fatalf("presigned GET: %d %q", status, b)
	}
	u, _ := url.Parse(ps.URL)
	q := u.Query()
	sig := q.Get("X-Amz-Signature")
	q.Set("X-Amz-Signature", strings.Repeat("0", len(sig)))
	u.RawQuery = q.Encode()
	if status, _ := httpGet(t, u.String()); status != http.StatusForbidden {
		t.Fatalf("tampered presigned GET: status %d, want 403", status)
	}
}

func httpGet(t *testing.T, u string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// Stop ends the emulator: its port stops answering and Stop is repeatable.
func TestStopKillsEmulator(t *testing.T) {
	ctx := testCtx(t)
	if err := EnsureTools(ctx); err != nil {
		t.Fatal(err)
	}
	p, err := StartDynalite(ctx, t.TempDir()+"/dynamo")
	if err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(p.Endpoint, "http://")
	if !strings.HasPrefix(host, "127.0.0.1:") {
		t.Fatalf("endpoint %s is not on 127.0.0.1", p.Endpoint)
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if !p.Exited() {
		t.Fatal("process still running after Stop")
	}
	if c, err := net.DialTimeout("tcp", host, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after Stop", host)
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

// dynalite keeps its data under dataDir across a restart (make run's .localdev).
func TestDynalitePersists(t *testing.T) {
	ctx := testCtx(t)
	if err := EnsureTools(ctx); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir() + "/dynamo"
	p, err := StartDynalite(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	db, _ := DynamoClient(ctx, p.Endpoint)
	if err := CreateTable(ctx, db, Table); err != nil {
		p.Stop()
		t.Fatal(err)
	}
	p.Stop()
	p, err = StartDynalite(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	db, _ = DynamoClient(ctx, p.Endpoint)
	out, err := db.ListTables(ctx, &dynamodb.ListTablesInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.TableNames) != 1 || out.TableNames[0] != Table {
		t.Fatalf("tables after restart: %v, want [%s]", out.TableNames, Table)
	}
}

// DynamoDB Local listens on every address, so the harness refuses to start
// it outside a private network namespace; inside one it works.
func TestDynamoDBLocal(t *testing.T) {
	if !InPrivateNetns() {
		if _, err := StartDynamoDBLocal(context.Background(), ""); err == nil {
			t.Fatal("StartDynamoDBLocal outside a private netns: want an error")
		}
	}
	if RunInNetns(t, EnvDynamo+"=ddblocal") {
		return
	}
	ctx := testCtx(t)
	if err := EnsureTools(ctx); err != nil {
		t.Fatal(err)
	}
	p, err := StartDynamoDBLocal(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	db, err := DynamoClient(ctx, p.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	if err := CreateTable(ctx, db, Table); err != nil {
		t.Fatal(err)
	}
	checkDynamo(ctx, t, db, Table)
}

// MinIO (the second S3 target) starts from bin/minio and round-trips.
func TestMinIO(t *testing.T) {
	if _, err := tool("minio"); err != nil {
		if os.Getenv("AIRLOCK_BUILD_MINIO") == "" {
			t.Skipf("MinIO not installed (%v); run `make tools` or set AIRLOCK_BUILD_MINIO=1 to build it here", err)
		}
	}
	ctx := testCtx(t)
	if err := EnsureMinIO(ctx); err != nil {
		t.Fatal(err)
	}
	p, err := StartMinIO(ctx, t.TempDir()+"/minio")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	if err := CreateBucket(ctx, S3Client(p.Endpoint), Bucket); err != nil {
		t.Fatal(err)
	}
	checkS3(ctx, t, p.Endpoint, Bucket)
}
