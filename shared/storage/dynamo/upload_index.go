package dynamo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/airlock-registry/airlock/shared/storage"
)

var _ storage.UploadLister = (*Store)(nil)

// The upload index (storage.UploadLister) lists sessions by creation time
// without a Scan: CreateUpload also writes one small entry
//
//	pk UPLOADS#<yyyy-mm-dd>  sk <created, epoch ms, 13 digits>#<id>  (id, expiresAt)
//
// into the partition of the session's creation day (UTC). ListUploads
// queries the days of the last storage.UploadListDays up to the cut-off,
// each Query bounded by sk < <cut-off ms>, reads the sessions with
// BatchGetItem, and deletes the entries whose session no longer exists
// (completed or cancelled uploads: DeleteUpload, on the push's hot path,
// does not know the day and leaves its entry). So every entry is read at
// most once after its session is gone, and the entries of sessions that
// outlive the index expire by TTL (expiresAt: creation + UploadListDays
// days) at no cost.
//
// Costs: one more PutItem per CreateUpload (written in parallel with the
// session: no added latency), and per listed entry a share of a Query
// page, one BatchGetItem read and, once its session is gone, one
// DeleteItem. No Scan (only the purge's blob collection scans the table,
// storage.Collector.Scan, and only the purge function may). A day's
// entries share one partition key: DynamoDB sustains about 1,000 writes
// per second per partition, far more upload POSTs than one registry sees.
// Sessions created before the index existed have no entry: they are never
// listed (DynamoDB's TTL and the bucket's lifecycle rules remove them).

const (
	prefixUploadIndex = "UPLOADS#"
	// uploadIndexPage is the Limit of the index Queries: each page's
	// sessions are read with one BatchGetItem (at most 100 keys).
	uploadIndexPage = maxBatchKeys
	// staleDeleters bounds the parallel DeleteItems of stale entries.
	staleDeleters = 8
)

// uploadIndexItem is one index entry.
type uploadIndexItem struct {
	key
	ID        string `dynamodbav:"id"`
	ExpiresAt int64  `dynamodbav:"expiresAt"`
}

// uploadAttrs are the attributes of a session item (BatchGetItem projection).
var uploadAttrs = []string{attrPK, attrSK, "id", "repo", "name", "offset", "multipartId", "parts", "staged",
	"hashAlg", "hashState", "lease", "leaseUntil", "created", attrExpires, "updated"}

// indexTime is the time a session is indexed under: Created, or the time of
// CreateUpload when Created is zero.
func indexTime(u storage.Upload, now time.Time) time.Time {
	if u.Created.IsZero() {
		return now.UTC()
	}
	return u.Created.UTC()
}

func indexDayPK(t time.Time) string { return prefixUploadIndex + t.UTC().Format(time.DateOnly) }

func indexMillis(t time.Time) string { return fmt.Sprintf("%013d", max(t.UnixMilli(), 0)) }

// putUploadIndex writes the index entry of a new session.
func (s *Store) putUploadIndex(ctx context.Context, u storage.Upload, now time.Time) error {
	t := indexTime(u, now)
	it := uploadIndexItem{
		key:       key{PK: indexDayPK(t), SK: indexMillis(t) + "#" + u.ID},
		ID:        u.ID,
		ExpiresAt: t.Add(storage.UploadListDays * 24 * time.Hour).Unix(),
	}
	return s.putItem(ctx, it, nil)
}

// ListUploads returns up to n (n <= 0: all) sessions indexed before
// olderThan and after the cursor after (an index entry's sort key), oldest
// first, from the index of the last storage.UploadListDays days; entries
// of sessions that are gone are deleted. With a cursor the days before its
// own are not read, and its day's Query starts after it (ExclusiveStartKey:
// the entry need not exist).
func (s *Store) ListUploads(ctx context.Context, olderThan time.Time, after string, n int) ([]storage.ListedUpload, error) {
	cut := olderThan.UTC()
	first := cut.AddDate(0, 0, -storage.UploadListDays).Truncate(24 * time.Hour)
	var start map[string]types.AttributeValue
	if after != "" {
		at, _, err := storage.ParseUploadCursor(after)
		if err != nil {
			return nil, fmt.Errorf("list uploads: %w", err)
		}
		if after >= indexMillis(cut) {
			return []storage.ListedUpload{}, nil // nothing before the cut-off follows it
		}
		if day := at.Truncate(24 * time.Hour); !day.Before(first) {
			first = day
			start = map[string]types.AttributeValue{
				attrPK: &types.AttributeValueMemberS{Value: indexDayPK(day)},
				attrSK: &types.AttributeValueMemberS{Value: after},
			}
		}
	}
	out := []storage.ListedUpload{}
	seen := map[string]bool{}
	for day := first; !day.After(cut); day = day.AddDate(0, 0, 1) {
		kc := expression.Key(attrPK).Equal(expression.Value(indexDayPK(day))).
			And(expression.Key(attrSK).LessThan(expression.Value(indexMillis(cut))))
		expr, err := expression.NewBuilder().WithKeyCondition(kc).Build()
		if err != nil {
			return nil, fmt.Errorf("list uploads: build query: %w", err)
		}
		in := &dynamodb.QueryInput{
			TableName:                 aws.String(s.table),
			KeyConditionExpression:    expr.KeyCondition(),
			ExpressionAttributeNames:  expr.Names(),
			ExpressionAttributeValues: expr.Values(),
			ConsistentRead:            aws.Bool(true),
			Limit:                     aws.Int32(uploadIndexPage),
			ExclusiveStartKey:         start,
		}
		start = nil
		for {
			res, err := s.db.Query(ctx, in)
			if err != nil {
				return nil, fmt.Errorf("list uploads of %s: %w", day.Format(time.DateOnly), err)
			}
			var entries []uploadIndexItem
			if err := attributevalue.UnmarshalListOfMaps(res.Items, &entries); err != nil {
				return nil, fmt.Errorf("list uploads: decode index entries: %w", err)
			}
			got, err := s.indexedSessions(ctx, entries, seen, n-len(out))
			if err != nil {
				return nil, err
			}
			out = append(out, got...)
			if n > 0 && len(out) >= n {
				return out[:n], nil
			}
			if len(res.LastEvaluatedKey) == 0 {
				break
			}
			in.ExclusiveStartKey = res.LastEvaluatedKey
		}
	}
	return out, nil
}

// indexedSessions reads the sessions of one page of index entries (in
// entry order, up to want of them when want > 0) and deletes the entries
// whose session is gone.
func (s *Store) indexedSessions(ctx context.Context, entries []uploadIndexItem, seen map[string]bool, want int) ([]storage.ListedUpload, error) {
	keys := make([]key, len(entries))
	for i, e := range entries {
		keys[i] = uploadKey(e.ID)
	}
	items, err := s.batchGet(ctx, keys, uploadAttrs...)
	if err != nil {
		return nil, fmt.Errorf("list uploads: read sessions: %w", err)
	}
	var out []storage.ListedUpload
	var stale []key
	for i, e := range entries {
		av, ok := items[keys[i]]
		if !ok {
			stale = append(stale, e.key)
			continue
		}
		if seen[e.ID] || (want > 0 && len(out) >= want) {
			continue
		}
		seen[e.ID] = true
		var it uploadItem
		if err := attributevalue.UnmarshalMap(av, &it); err != nil {
			return nil, fmt.Errorf("list uploads: decode session %s: %w", e.ID, err)
		}
		lu := storage.ListedUpload{Upload: it.upload(), Updated: it.Created, Cursor: e.SK}
		if it.Updated != 0 {
			lu.Updated = time.UnixMilli(it.Updated).UTC()
		}
		out = append(out, lu)
	}
	return out, s.deleteStale(ctx, stale)
}

// deleteStale deletes index entries, a few at a time.
func (s *Store) deleteStale(ctx context.Context, keys []key) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		sem  = make(chan struct{}, staleDeleters)
	)
	for _, k := range keys {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := s.deleteItem(ctx, k, nil); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("delete index entry %s %s: %w", k.PK, k.SK, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
