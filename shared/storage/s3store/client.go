// Package s3store implements storage.Blobs on Amazon S3 (or an S3-compatible
// server: versitygw and MinIO locally), with the optional storage.ChunkStager,
// storage.StagedReader, storage.BlobReader, storage.PartPresigner (direct-to-S3
// uploads) and storage.ObjectLister (the purge's reconciliation).
//
// Keys (every one a leaf; see README, Architecture: Where data lives):
//
//	blobs/<alg>/<2 hex>/<hex>            storage.BlobKey: small blobs, put whole
//	blobs/uploads/<id>                   storage.UploadKey: an upload's multipart upload, and the blob once completed
//	manifests/<alg>/<2 hex>/<hex>        storage.ManifestKey: large manifest bodies
//	uploads/<id>/stage-<start>           a short chunk staged until a part can be made
//	uploads/<id>/stage-<start>-<end>     tiny chunks coalesced into one staged object
//	purge/blob-gc/<pass>                 storage.PurgePrefix: the blob GC pass state between runs
//
// (offsets as 20 digits). A multipart upload is created before the blob's
// digest is known, so it is created at the upload's own key and the blob
// keeps that key (recorded in its DynamoDB items): Complete copies nothing.
// The bucket's lifecycle rule expires uploads/ (staged objects) and aborts
// incomplete multipart uploads; blobs/ is never expired.
//
// Append is the hot path of a push (README, Architecture: Request flows). A
// streamed body is cut into parts of the part size, uploaded one at a time
// while the next part is read; a tail shorter than storage.MinPartSize joins
// the part before it, so a streamed body stages nothing. Chunks shorter than a part are staged as their
// own objects; once staged and new bytes make at least storage.MinPartSize, the
// staged objects are read back once, in parallel, and sent with the new bytes
// as one part. Every byte is written at most twice, except chunks under 64 KiB
// after 16 staged ones, which are coalesced (rewritten) to keep the session
// item small. Complete deletes the staged objects still listed in the session
// with one DeleteObjects call; those read into earlier parts are left to the
// lifecycle rule (tracking them would grow the session item with every chunk).
package s3store

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Options configure NewClient. With every field empty the client uses the
// default AWS configuration (region and credentials from the environment, the
// Lambda role's credentials on AWS).
type Options struct {
	// Endpoint is the base URL of an S3-compatible server ("http://127.0.0.1:7070").
	// When set, the client uses path-style addressing and computes or validates
	// checksums only when an operation requires them (emulators lag behind S3's
	// default integrity checks).
	Endpoint string
	// Region defaults to the environment's region, or "us-east-1" with an Endpoint.
	Region string
	// AccessKey and SecretKey, when set, are static credentials; otherwise the
	// default credential chain is used.
	AccessKey string
	SecretKey string
}

// NewClient builds an S3 client from o.
func NewClient(ctx context.Context, o Options) (*s3.Client, error) {
	if (o.AccessKey == "") != (o.SecretKey == "") {
		return nil, errors.New("s3store: AccessKey and SecretKey must be set together")
	}
	var loads []func(*config.LoadOptions) error
	if o.Region != "" {
		loads = append(loads, config.WithRegion(o.Region))
	}
	if o.AccessKey != "" {
		loads = append(loads, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(o.AccessKey, o.SecretKey, "")))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loads...)
	if err != nil {
		return nil, fmt.Errorf("s3store: load AWS config: %w", err)
	}
	if o.Endpoint != "" && cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	return s3.NewFromConfig(cfg, func(so *s3.Options) {
		if o.Endpoint != "" {
			so.BaseEndpoint = aws.String(o.Endpoint)
			so.UsePathStyle = true
			so.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
			so.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
			// versitygw keeps keys as files: a write racing the delete of
			// the last object of a "directory" (which removes the empty
			// directory) can fail with 409 ExistingObjectIsDirectory. S3
			// has no directories and never answers it; retry it like a
			// throttle (found by the purge's race test).
			so.Retryer = retry.AddWithErrorCodes(retry.NewStandard(), "ExistingObjectIsDirectory")
		}
	}), nil
}

// unsignedPayload is a per-operation option for the body-carrying writes
// (UploadPart, PutObject): the request signs "UNSIGNED-PAYLOAD" instead of
// the body's SHA-256. Over TLS (S3 on AWS) the SDK already does this for these
// operations; over plain http (the local emulators) it would otherwise hash
// every byte once more in the client and again in the server, on top of the
// digest the registry computes itself. Integrity does not rest on it: the
// registry verifies the blob's digest over the bytes it received, and the
// SDK's own checksums (RequestChecksumCalculation) are left as configured.
func unsignedPayload(o *s3.Options) {
	o.APIOptions = append(o.APIOptions, v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)
}
