package cloud

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/airlock-registry/airlock/shared/config"
	"github.com/airlock-registry/airlock/shared/repo"
	"github.com/airlock-registry/airlock/shared/storage/dynamo"
	"github.com/airlock-registry/airlock/shared/storage/s3store"
)

// Env is what every Airlock function builds at cold start from its
// environment (template.yaml sets it): the configuration, both stores, the
// logger and the proxy options.
type Env struct {
	Config *config.Config
	Meta   *dynamo.Store
	Blobs  *s3store.Store
	Logger *slog.Logger
	Proxy  repo.ProxyOptions
	// Fetch invokes the proxyfetch function asynchronously with an event
	// (nil when AIRLOCK_PROXYFETCH_FUNCTION is unset: in proxyfetch itself).
	Fetch func(ctx context.Context, event any) error
}

// FromEnv reads AIRLOCK_CONFIG, AIRLOCK_TABLE, AIRLOCK_BUCKET, LOG_LEVEL,
// AIRLOCK_PROXYFETCH_FUNCTION (the function fills are handed to; unset in
// proxyfetch itself) and, for local emulators only (sam local, tests/lambda),
// AIRLOCK_DYNAMODB_ENDPOINT and AIRLOCK_S3_ENDPOINT.
func FromEnv(ctx context.Context) (*Env, error) {
	cfg, err := config.FromEnv("AIRLOCK_CONFIG")
	if err != nil {
		return nil, err
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("AWS configuration: %w", err)
	}
	s3c, err := s3store.NewClient(ctx, s3store.Options{Endpoint: os.Getenv("AIRLOCK_S3_ENDPOINT")})
	if err != nil {
		return nil, err
	}
	db := dynamodb.NewFromConfig(awsCfg, func(o *dynamodb.Options) {
		if ep := os.Getenv("AIRLOCK_DYNAMODB_ENDPOINT"); ep != "" {
			o.BaseEndpoint = &ep
		}
	})
	e := &Env{
		Config: cfg,
		Meta:   dynamo.New(db, os.Getenv("AIRLOCK_TABLE")),
		Blobs:  s3store.New(s3c, os.Getenv("AIRLOCK_BUCKET")),
		Logger: slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel()})),
	}
	sec := Secrets{SM: secretsmanager.NewFromConfig(awsCfg), SSM: ssm.NewFromConfig(awsCfg)}
	e.Proxy.Secret = sec.Resolve
	if fn := os.Getenv("AIRLOCK_PROXYFETCH_FUNCTION"); fn != "" {
		lc := lambda.NewFromConfig(awsCfg)
		e.Proxy.Handoff = Handoff(lc, fn)
		e.Fetch = func(ctx context.Context, event any) error { return invokeAsync(ctx, lc, fn, event) }
	}
	return e, nil
}

// logLevel reads LOG_LEVEL (debug, info, warn, error; default info).
func logLevel() slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(os.Getenv("LOG_LEVEL"))); err != nil {
		return slog.LevelInfo
	}
	return l
}

// LimitMemory sets Go's soft memory limit (runtime/debug.SetMemoryLimit) to
// 90% of the function's memory, read from AWS_LAMBDA_FUNCTION_MEMORY_SIZE
// (MB, set by Lambda), so that the garbage collector works harder near the
// limit instead of letting garbage push the function over it. It returns
// the limit set, 0 when the variable is missing or not a number (outside
// Lambda: nothing is set).
func LimitMemory() int64 {
	n := memoryLimit(os.Getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"))
	if n > 0 {
		debug.SetMemoryLimit(n)
	}
	return n
}

// memoryLimit is 90% of mb megabytes in bytes (0 for a bad mb).
func memoryLimit(mb string) int64 {
	n, err := strconv.ParseInt(mb, 10, 64)
	if err != nil || n <= 0 || n > 1<<20 {
		return 0
	}
	return n << 20 / 10 * 9
}
