// Command api is the Lambda function serving the whole /v2/ API behind API
// Gateway (HTTP API, payload format 2.0). Thin wiring only: the work is in
// shared/. Everything is built once, at cold start.
package main

import (
	"context"
	"log"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/airlock-registry/airlock/shared/config"
	"github.com/airlock-registry/airlock/shared/registry"
	"github.com/airlock-registry/airlock/shared/storage/dynamo"
	"github.com/airlock-registry/airlock/shared/storage/s3store"
)

func main() {
	ctx := context.Background()
	cfg, err := config.FromEnv("AIRLOCK_CONFIG")
	if err != nil {
		log.Fatal(err)
	}
	limit, err := maxBody()
	if err != nil {
		log.Fatal(err)
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		log.Fatal(err)
	}
	// AIRLOCK_*_ENDPOINT: local emulators only (sam local, tests/lambda); unset on AWS.
	s3c, err := s3store.NewClient(ctx, s3store.Options{Endpoint: os.Getenv("AIRLOCK_S3_ENDPOINT")})
	if err != nil {
		log.Fatal(err)
	}
	db := dynamodb.NewFromConfig(awsCfg, func(o *dynamodb.Options) {
		if ep := os.Getenv("AIRLOCK_DYNAMODB_ENDPOINT"); ep != "" {
			o.BaseEndpoint = &ep
		}
	})
	h, err := registry.New(registry.Deps{
		Meta:                 dynamo.New(db, os.Getenv("AIRLOCK_TABLE")),
		Blobs:                s3store.New(s3c, os.Getenv("AIRLOCK_BUCKET")),
		Config:               cfg,
		MaxBody:              limit,
		ManifestRedirectSize: responseBodyLimit,
		Logger:               slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel()})),
	})
	if err != nil {
		log.Fatal(err)
	}
	lambda.Start(httpadapter.NewV2(h).ProxyWithContext)
}

// logLevel reads LOG_LEVEL (debug, info, warn, error; default info).
func logLevel() slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(os.Getenv("LOG_LEVEL"))); err != nil {
		return slog.LevelInfo
	}
	return l
}
