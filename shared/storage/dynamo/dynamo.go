// Package dynamo implements storage.Metadata, storage.ProxyMetadata and the
// optional storage.BatchReader, storage.Searcher, storage.UploadLister and
// storage.Collector on one DynamoDB table.
//
// The table has a string partition key "pk", a string sort key "sk" and the
// TTL attribute "expiresAt" (epoch seconds). Items (see also README,
// Architecture: Where data lives):
//
//	pk IMG#<repo>/<name>  sk T#<tag>                 tag → digest, at (written, epoch ms) (+ checked, epoch ms, for proxies)
//	                      sk M#<digest>              manifest (+ touched, pulled, epoch ms)
//	                      sk B#<digest>              blob link (size, key, touched)
//	                      sk R#<subject>#<digest>    referrer descriptor (+ touched)
//	pk BLOB#<digest>      sk BLOB                    global blob record (size, key, touched)
//	pk CATALOG            sk <repo>/<name>           catalog entry: name (lower-cased copy of sk, for
//	                                                 search filters), token (random, per PutManifest)
//	pk UPLOAD#<id>        sk UPLOAD                  upload session (+ updated, epoch ms)
//	pk UPLOADS#<day>      sk <created ms>#<id>       upload index entry (storage.UploadLister, upload_index.go)
//	pk MARK#<group>       sk <key>                   marker: value, count, until (epoch ms)
//
// No call uses transactions (dynalite has none): writes are ordered children
// first (blob record → link → manifest → tag) and deletes in reverse, so a
// crash between two writes leaves garbage for purge, never a dangling
// reference. An image's catalog entry is written after its manifest and
// removed after its last manifest, on a condition that makes the removal
// safe against a racing push (catalog.go, dropFromCatalog). Every read is
// strongly consistent (BatchGetItem's too, batch.go), and reads of upload
// sessions and markers filter expired items themselves (sessions on
// expiresAt, markers on until, to the millisecond) because TTL deletion is
// lazy (and absent from the emulators).
//
// The touch times (touched, at, pulled) serve storage.Collector, the purge's
// capability (collect.go): conditional deletes "not touched since the cut",
// and the one Scan of the table, which only the purge function may call.
package dynamo

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/airlock-registry/airlock/shared/storage"
)

// Attribute names of the key and of the TTL.
const (
	attrPK      = "pk"
	attrSK      = "sk"
	attrExpires = "expiresAt"
)

// Sort-key prefixes and fixed keys.
const (
	prefixTag      = "T#"
	prefixManifest = "M#"
	prefixLink     = "B#"
	prefixReferrer = "R#"
	pkCatalog      = "CATALOG"
	skBlob         = "BLOB"
	skUpload       = "UPLOAD"
)

// DynamoDB's key size limits, in bytes of UTF-8.
const (
	maxPK = 2048
	maxSK = 1024
)

// errKeyTooLong is returned when an item to write has a key over DynamoDB's
// limits. Reads and deletes of such keys need no call: nothing can be stored there.
var errKeyTooLong = errors.New("key too long for DynamoDB (partition key ≤ 2048 bytes, sort key ≤ 1024)")

// Store is the DynamoDB implementation of storage.Metadata.
type Store struct {
	db    *dynamodb.Client
	table string
	// now is the clock of expiry and lease checks.
	now func() time.Time
	// searchPage is the Limit of SearchImages' Query pages when n > 0.
	searchPage int32
}

var _ storage.Metadata = (*Store)(nil)

// New returns a Store using table through client.
func New(client *dynamodb.Client, table string) *Store {
	return &Store{db: client, table: table, now: time.Now, searchPage: defaultSearchPage}
}

// key is the primary key of one item.
type key struct {
	PK string `dynamodbav:"pk"`
	SK string `dynamodbav:"sk"`
}

func imagePK(img storage.Image) string { return "IMG#" + img.String() }
func blobPK(d string) string           { return "BLOB#" + d }
func uploadPK(id string) string        { return "UPLOAD#" + id }

// av returns the DynamoDB form of k.
func (k key) av() map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		attrPK: &types.AttributeValueMemberS{Value: k.PK},
		attrSK: &types.AttributeValueMemberS{Value: k.SK},
	}
}

// fits reports whether k is within DynamoDB's key size limits.
func (k key) fits() bool { return len(k.PK) <= maxPK && len(k.SK) <= maxSK }

// conditionFailed reports whether err is a lost conditional write.
func conditionFailed(err error) bool {
	var ccf *types.ConditionalCheckFailedException
	return errors.As(err, &ccf)
}

// getItem reads one item (strongly consistent) into out; ErrNotFound when absent.
func (s *Store) getItem(ctx context.Context, k key, out any) error {
	if !k.fits() {
		return storage.ErrNotFound
	}
	res, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(s.table),
		Key:            k.av(),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return err
	}
	if res.Item == nil {
		return storage.ErrNotFound
	}
	return decodeItem(res.Item, k, out)
}

// decodeItem decodes av, the item at k as a request read or returned it,
// into out; nothing when out is nil (no item asked for).
func decodeItem(av map[string]types.AttributeValue, k key, out any) error {
	if out == nil {
		return nil
	}
	if err := attributevalue.UnmarshalMap(av, out); err != nil {
		return fmt.Errorf("decode item %s %s: %w", k.PK, k.SK, err)
	}
	return nil
}

// putItem writes item, under cond when cond is set. A lost condition is
// returned as storage.ErrConflict.
func (s *Store) putItem(ctx context.Context, item any, cond *expression.ConditionBuilder) error {
	av, err := attributevalue.MarshalMap(item)
	if err != nil {
		return fmt.Errorf("encode item: %w", err)
	}
	var k key
	if err := attributevalue.UnmarshalMap(av, &k); err != nil || !k.fits() {
		return fmt.Errorf("put item %.64s… %.64s…: %w", k.PK, k.SK, errKeyTooLong)
	}
	in := &dynamodb.PutItemInput{TableName: aws.String(s.table), Item: av}
	c, err := buildCondition(cond)
	if err != nil {
		return err
	}
	in.ConditionExpression, in.ExpressionAttributeNames, in.ExpressionAttributeValues = c.expr, c.names, c.values
	if _, err := s.db.PutItem(ctx, in); err != nil {
		if conditionFailed(err) {
			return storage.ErrConflict
		}
		return err
	}
	return nil
}

// deleteItem deletes one item, under cond when cond is set. A lost condition
// is returned as storage.ErrConflict.
func (s *Store) deleteItem(ctx context.Context, k key, cond *expression.ConditionBuilder) error {
	if !k.fits() { // no such item: a condition on it fails, a plain delete is done
		if cond != nil {
			return storage.ErrConflict
		}
		return nil
	}
	in := &dynamodb.DeleteItemInput{TableName: aws.String(s.table), Key: k.av()}
	c, err := buildCondition(cond)
	if err != nil {
		return err
	}
	in.ConditionExpression, in.ExpressionAttributeNames, in.ExpressionAttributeValues = c.expr, c.names, c.values
	if _, err := s.db.DeleteItem(ctx, in); err != nil {
		if conditionFailed(err) {
			return storage.ErrConflict
		}
		return err
	}
	return nil
}

// condition is a built condition expression (all nil when there is none).
type condition struct {
	expr   *string
	names  map[string]string
	values map[string]types.AttributeValue
}

// buildCondition builds cond for a PutItem or DeleteItem input.
func buildCondition(cond *expression.ConditionBuilder) (condition, error) {
	if cond == nil {
		return condition{}, nil
	}
	expr, err := expression.NewBuilder().WithCondition(*cond).Build()
	if err != nil {
		return condition{}, fmt.Errorf("build condition: %w", err)
	}
	return condition{expr.Condition(), expr.Names(), expr.Values()}, nil
}

// mustExist is the condition "the item being written or deleted exists".
func mustExist() *expression.ConditionBuilder {
	c := expression.AttributeExists(expression.Name(attrPK))
	return &c
}

// mustNotExist is the condition "no item has this key yet".
func mustNotExist() *expression.ConditionBuilder {
	c := expression.AttributeNotExists(expression.Name(attrPK))
	return &c
}

// query lists, in key order, the sort keys of the items of partition pk
// whose sort key starts with prefix and sorts strictly after after ("": from
// the first), up to limit of them (limit <= 0: all), following pages. filter,
// when set, keeps only the items matching it.
func (s *Store) query(ctx context.Context, pk, prefix, after string, filter *expression.ConditionBuilder, limit int) ([]string, error) {
	return s.queryKeys(ctx, pk, prefix, after, filter, limit, nil, 0)
}

// queryKeys is query with two more knobs: keep, when set, drops the sort
// keys it refuses after they are read (a check the filter cannot express),
// and page, when set, is every page's Limit (else the number of keys still
// missing, at most 1,000).
func (s *Store) queryKeys(ctx context.Context, pk, prefix, after string, filter *expression.ConditionBuilder, limit int, keep func(sk string) bool, page int32) ([]string, error) {
	if len(pk) > maxPK || len(prefix) > maxSK {
		return nil, nil // no item can have such a key
	}
	kc := expression.Key(attrPK).Equal(expression.Value(pk))
	if prefix != "" {
		kc = kc.And(expression.Key(attrSK).BeginsWith(prefix))
	}
	b := expression.NewBuilder().WithKeyCondition(kc).
		WithProjection(expression.NamesList(expression.Name(attrSK)))
	if filter != nil {
		b = b.WithFilter(*filter)
	}
	expr, err := b.Build()
	if err != nil {
		return nil, fmt.Errorf("build query: %w", err)
	}
	in := &dynamodb.QueryInput{
		TableName:                 aws.String(s.table),
		KeyConditionExpression:    expr.KeyCondition(),
		FilterExpression:          expr.Filter(),
		ProjectionExpression:      expr.Projection(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
		ConsistentRead:            aws.Bool(true),
	}
	if after != "" {
		in.ExclusiveStartKey = key{PK: pk, SK: truncateKey(after, maxSK)}.av()
	}
	var out []string
	for {
		switch {
		case limit > 0 && page > 0:
			in.Limit = aws.Int32(page)
		case limit > 0:
			// Limit counts items read before the filter; asking for the number
			// still missing keeps pages small without ever stopping early.
			in.Limit = aws.Int32(int32(min(limit-len(out), 1000)))
		}
		res, err := s.db.Query(ctx, in)
		if err != nil {
			return nil, err
		}
		for _, item := range res.Items {
			var k key
			if err := attributevalue.UnmarshalMap(item, &k); err != nil {
				return nil, fmt.Errorf("decode key: %w", err)
			}
			if keep == nil || keep(k.SK) {
				out = append(out, k.SK)
			}
		}
		if limit > 0 && len(out) >= limit {
			return out[:limit], nil
		}
		if len(res.LastEvaluatedKey) == 0 {
			return out, nil
		}
		in.ExclusiveStartKey = res.LastEvaluatedKey
	}
}

// truncateKey cuts a start key longer than DynamoDB allows to n bytes (at a
// rune boundary). Stored keys are at most n bytes long, so exactly the same
// ones sort after the cut key as after the whole one (for ASCII keys, which
// all tags and image names are).
func truncateKey(k string, n int) string {
	if len(k) <= n {
		return k
	}
	for n > 0 && !utf8.RuneStart(k[n]) {
		n--
	}
	return k[:n]
}

// page turns up to n+1 listed names into a Page of at most n (n <= 0: all).
func page(names []string, n int) storage.Page {
	p := storage.Page{Items: names}
	if n > 0 && len(names) > n {
		p.Items, p.More = names[:n], true
	}
	if p.Items == nil {
		p.Items = []string{}
	}
	return p
}
