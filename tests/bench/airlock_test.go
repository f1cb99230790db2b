//go:build bench

package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/airlock-registry/airlock/localdev/harness"
	"github.com/airlock-registry/airlock/shared/awscount"
	"github.com/airlock-registry/airlock/shared/config"
	"github.com/airlock-registry/airlock/shared/registry"
	"github.com/airlock-registry/airlock/shared/storage/dynamo"
	"github.com/airlock-registry/airlock/shared/storage/s3store"
)

// serveEnv, when set, makes the test binary an Airlock server (serveMain)
// instead of running tests: the benchmark starts itself this way to measure
// the registry as a process of its own (peak RSS, no shared CPU accounting).
const serveEnv = "AIRLOCK_BENCH_SERVE"

func TestMain(m *testing.M) {
	// harness.Root looks for the nearest go.mod, which is this module's own:
	// point it at the main module two directories up.
	if os.Getenv("AIRLOCK_ROOT") == "" {
		if root, err := filepath.Abs(filepath.Join("..", "..")); err == nil {
			os.Setenv("AIRLOCK_ROOT", root)
		}
	}
	if os.Getenv(serveEnv) != "" {
		if err := serveMain(); err != nil {
			fmt.Fprintln(os.Stderr, "airlock bench server:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// registryYAML configures one hosted repository "local", also the default.
const registryYAML = `default: local
repositories:
- name: local
  kind: hosted
`

// awsClients builds DynamoDB and S3 clients for the emulators, counting their
// calls in c when c is not nil.
func awsClients(ctx context.Context, dynamoURL, s3URL string, c *awscount.Counter) (*dynamodb.Client, *s3.Client, error) {
	db, err := harness.DynamoClient(ctx, dynamoURL)
	if err != nil {
		return nil, nil, err
	}
	s3c, err := s3store.NewClient(ctx, s3store.Options{
		Endpoint: s3URL, Region: harness.Region, AccessKey: harness.AccessKey, SecretKey: harness.SecretKey,
	})
	if err != nil {
		return nil, nil, err
	}
	if c != nil {
		db = dynamodb.New(db.Options(), func(o *dynamodb.Options) {
			o.APIOptions = append(slices.Clip(o.APIOptions), c.APIOption())
		})
		s3c = s3.New(s3c.Options(), func(o *s3.Options) {
			o.APIOptions = append(slices.Clip(o.APIOptions), c.APIOption())
		})
	}
	return db, s3c, nil
}

// newAirlock builds the registry handler on table and bucket (both created
// when missing), exactly as the api function wires it.
func newAirlock(ctx context.Context, dynamoURL, table, s3URL, bucket string, c *awscount.Counter, opts ...func(*registry.Deps)) (*registry.Registry, *s3store.Store, error) {
	db, s3c, err := awsClients(ctx, dynamoURL, s3URL, c)
	if err != nil {
		return nil, nil, err
	}
	if err := harness.CreateTable(ctx, db, table); err != nil {
		return nil, nil, err
	}
	if err := harness.CreateBucket(ctx, s3c, bucket); err != nil {
		return nil, nil, err
	}
	cfg, err := config.Parse([]byte(registryYAML))
	if err != nil {
		return nil, nil, err
	}
	blobs := s3store.New(s3c, bucket)
	deps := registry.Deps{Meta: dynamo.New(db, table), Blobs: blobs, Config: cfg}
	for _, o := range opts {
		o(&deps)
	}
	rg, err := registry.New(deps)
	if err != nil {
		return nil, nil, err
	}
	return rg, blobs, nil
}

// serveMain is the Airlock server process: it prints "listening URL" and
// serves until killed. AIRLOCK_BENCH_MAX_BODY sets Deps.MaxBody (the front
// door's body limit, as localdev's -max-body).
func serveMain() error {
	ctx := context.Background()
	maxBody, _ := strconv.ParseInt(os.Getenv("AIRLOCK_BENCH_MAX_BODY"), 10, 64)
	rg, _, err := newAirlock(ctx, os.Getenv("AIRLOCK_BENCH_DYNAMO"), os.Getenv("AIRLOCK_BENCH_TABLE"),
		os.Getenv("AIRLOCK_BENCH_S3"), os.Getenv("AIRLOCK_BENCH_BUCKET"), nil, func(d *registry.Deps) { d.MaxBody = maxBody })
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Printf("listening http://%s\n", l.Addr())
	srv := &http.Server{Handler: rg, ReadHeaderTimeout: 10 * time.Second}
	return srv.Serve(l)
}
