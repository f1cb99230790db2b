package dynamo

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/storage"
)

var _ storage.BatchReader = (*Store)(nil)

// maxBatchKeys is the most keys one BatchGetItem may ask for.
const maxBatchKeys = 100

// Retries of the keys a BatchGetItem leaves unprocessed (throttling, or a
// response over 16 MB, which the projections below make unreachable): the
// first retry waits batchBackoff, each next one twice as long, up to
// batchRetries retries (about 2.5 s in all); then the call fails.
const (
	batchBackoff = 10 * time.Millisecond
	batchRetries = 8
)

// ResolveTags returns, for each image in order, the digest tag points at
// ("" when it has no such tag), with one BatchGetItem (strongly consistent)
// per 100 distinct keys.
func (s *Store) ResolveTags(ctx context.Context, imgs []storage.Image, tag string) ([]digest.Digest, error) {
	keys := make([]key, len(imgs))
	for i, img := range imgs {
		keys[i] = tagKey(img, tag)
	}
	items, err := s.batchGet(ctx, keys, attrPK, attrSK, "digest")
	if err != nil {
		return nil, fmt.Errorf("resolve tag %.80s in %d images: %w", tag, len(imgs), err)
	}
	out := make([]digest.Digest, len(imgs))
	for i, k := range keys {
		av, ok := items[k]
		if !ok {
			continue
		}
		var it tagItem
		if err := attributevalue.UnmarshalMap(av, &it); err != nil {
			return nil, fmt.Errorf("resolve tag %s:%s: decode: %w", imgs[i], tag, err)
		}
		out[i] = digest.Digest(it.Digest)
	}
	return out, nil
}

// StatBlobs returns, for each image in order, the link of d (ok[i] false
// when there is none), with one BatchGetItem (strongly consistent) per 100
// distinct keys.
func (s *Store) StatBlobs(ctx context.Context, imgs []storage.Image, d digest.Digest) ([]storage.Blob, []bool, error) {
	keys := make([]key, len(imgs))
	for i, img := range imgs {
		keys[i] = linkKey(img, d)
	}
	items, err := s.batchGet(ctx, keys, attrPK, attrSK, "digest", "size", "s3key", "created", attrTouched)
	if err != nil {
		return nil, nil, fmt.Errorf("stat blob %.80s in %d images: %w", d, len(imgs), err)
	}
	links, ok := make([]storage.Blob, len(imgs)), make([]bool, len(imgs))
	for i, k := range keys {
		av, found := items[k]
		if !found {
			continue
		}
		var it blobItem
		if err := attributevalue.UnmarshalMap(av, &it); err != nil {
			return nil, nil, fmt.Errorf("stat blob %s in %s: decode: %w", d, imgs[i], err)
		}
		links[i], ok[i] = it.blob(), true
	}
	return links, ok, nil
}

// HasManifests tells, for each image in order, whether manifest d is
// stored there, with one BatchGetItem (strongly consistent, keys only) per
// 100 distinct keys.
func (s *Store) HasManifests(ctx context.Context, imgs []storage.Image, d digest.Digest) ([]bool, error) {
	keys := make([]key, len(imgs))
	for i, img := range imgs {
		keys[i] = manifestKey(img, d)
	}
	items, err := s.batchGet(ctx, keys, attrPK, attrSK)
	if err != nil {
		return nil, fmt.Errorf("has manifest %.80s in %d images: %w", d, len(imgs), err)
	}
	out := make([]bool, len(imgs))
	for i, k := range keys {
		_, out[i] = items[k]
	}
	return out, nil
}

// batchGet reads the items at keys, strongly consistent, projected on the
// attributes named, and returns those that exist by key. Keys over
// DynamoDB's limits are left out (no item can have them) and repeated keys
// asked for once (BatchGetItem refuses duplicates): one BatchGetItem per
// maxBatchKeys distinct keys, none when no key remains. Keys left
// unprocessed are asked for again after a backoff.
func (s *Store) batchGet(ctx context.Context, keys []key, attrs ...string) (map[key]map[string]types.AttributeValue, error) {
	seen := make(map[key]bool, len(keys))
	var distinct []key
	for _, k := range keys {
		if k.fits() && !seen[k] {
			seen[k] = true
			distinct = append(distinct, k)
		}
	}
	out := make(map[key]map[string]types.AttributeValue, len(distinct))
	if len(distinct) == 0 {
		return out, nil
	}
	names := make([]expression.NameBuilder, len(attrs))
	for i, a := range attrs {
		names[i] = expression.Name(a)
	}
	expr, err := expression.NewBuilder().WithProjection(expression.NamesList(names[0], names[1:]...)).Build()
	if err != nil {
		return nil, fmt.Errorf("build projection: %w", err)
	}
	for start := 0; start < len(distinct); start += maxBatchKeys {
		chunk := distinct[start:min(start+maxBatchKeys, len(distinct))]
		avs := make([]map[string]types.AttributeValue, len(chunk))
		for i, k := range chunk {
			avs[i] = k.av()
		}
		if err := s.batchGetChunk(ctx, avs, expr, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// batchGetChunk reads up to maxBatchKeys distinct keys into out, retrying
// the unprocessed ones.
func (s *Store) batchGetChunk(ctx context.Context, keys []map[string]types.AttributeValue, expr expression.Expression, out map[key]map[string]types.AttributeValue) error {
	wait := batchBackoff
	for attempt := 0; ; attempt++ {
		res, err := s.db.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{
			RequestItems: map[string]types.KeysAndAttributes{s.table: {
				Keys:                     keys,
				ConsistentRead:           aws.Bool(true),
				ProjectionExpression:     expr.Projection(),
				ExpressionAttributeNames: expr.Names(),
			}},
		})
		if err != nil {
			return err
		}
		for _, item := range res.Responses[s.table] {
			var k key
			if err := attributevalue.UnmarshalMap(item, &k); err != nil {
				return fmt.Errorf("decode key: %w", err)
			}
			out[k] = item
		}
		keys = res.UnprocessedKeys[s.table].Keys
		if len(keys) == 0 {
			return nil
		}
		if attempt == batchRetries {
			return fmt.Errorf("BatchGetItem: %d keys still unprocessed after %d attempts", len(keys), attempt+1)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait *= 2
	}
}
