package dynamo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/storage"
)

var _ storage.ProxyMetadata = (*Store)(nil)

// Attribute names of tag checks and markers.
const (
	attrChecked = "checked"
	attrValue   = "value"
	attrUntil   = "until"
)

// tagCheckItem is a tag item (pk IMG#<repo>/<name>, sk T#<tag>, the same as
// tagItem) with the optional attribute checked: when the tag was last checked
// against the upstream, in epoch milliseconds. PutTag writes the whole item
// without it, so a hosted tag (or a proxied one overwritten by a push) reads
// back as never checked.
type tagCheckItem struct {
	key
	Digest  string `dynamodbav:"digest"`
	At      int64  `dynamodbav:"at,omitempty"`
	Checked int64  `dynamodbav:"checked,omitempty"`
}

// GetTagCheck returns the digest tag points at in img and when it was last
// checked (zero: never), with one GetItem; storage.ErrNotFound when there is
// no such tag.
func (s *Store) GetTagCheck(ctx context.Context, img storage.Image, tag string) (storage.TagCheck, error) {
	var it tagCheckItem
	if err := s.getItem(ctx, tagKey(img, tag), &it); err != nil {
		return storage.TagCheck{}, fmt.Errorf("get tag check %s:%s: %w", img, tag, err)
	}
	return storage.TagCheck{Digest: digest.Digest(it.Digest), Checked: fromMillis(it.Checked)}, nil
}

// PutTagCheck points tag at c.Digest and records c.Checked (to the
// millisecond; zero stores no checked attribute) and the write time (at)
// with one unconditional PutItem.
func (s *Store) PutTagCheck(ctx context.Context, img storage.Image, tag string, c storage.TagCheck) error {
	it := tagCheckItem{key: tagKey(img, tag), Digest: c.Digest.String(), At: toMillis(s.now()), Checked: toMillis(c.Checked)}
	if err := s.putItem(ctx, it, nil); err != nil {
		return fmt.Errorf("put tag check %s:%s: %w", img, tag, err)
	}
	return nil
}

// toMillis returns t in epoch milliseconds, 0 for the zero time.
func toMillis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// fromMillis reverses toMillis (in UTC).
func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// markerItem is a marker (pk MARK#<group>, sk <key>). Until, in epoch
// milliseconds, decides whether it is live (now < until); expiresAt, in epoch
// seconds, is the table's TTL attribute, rounded up so that DynamoDB never
// deletes a live marker.
type markerItem struct {
	key
	Value     string `dynamodbav:"value"`
	Count     int    `dynamodbav:"count"`
	Until     int64  `dynamodbav:"until"`
	ExpiresAt int64  `dynamodbav:"expiresAt"`
}

func markerPK(group string) string { return "MARK#" + group }

func markerKey(group, k string) key { return key{PK: markerPK(group), SK: k} }

// newMarkerItem checks m and returns its item.
func newMarkerItem(m storage.Marker) (markerItem, error) {
	if m.Key == "" || m.Until.IsZero() {
		return markerItem{}, fmt.Errorf("marker %s/%s: Key and Until are required", m.Group, m.Key)
	}
	exp := m.Until.Unix()
	if m.Until.After(time.Unix(exp, 0)) {
		exp++ // round up: TTL never removes a marker before Until
	}
	return markerItem{
		key:       markerKey(m.Group, m.Key),
		Value:     m.Value,
		Count:     m.Count,
		Until:     m.Until.UnixMilli(),
		ExpiresAt: exp,
	}, nil
}

func (it markerItem) marker(group string) storage.Marker {
	return storage.Marker{Group: group, Key: it.SK, Value: it.Value, Count: it.Count, Until: time.UnixMilli(it.Until).UTC()}
}

// notLive is the condition "the marker is absent or has expired at now".
func notLive(now time.Time) expression.ConditionBuilder {
	return expression.AttributeNotExists(expression.Name(attrPK)).
		Or(expression.Name(attrUntil).LessThanEqual(expression.Value(now.UnixMilli())))
}

// PutMarker writes m with one unconditional PutItem (Until kept to the millisecond).
func (s *Store) PutMarker(ctx context.Context, m storage.Marker) error {
	it, err := newMarkerItem(m)
	if err == nil {
		err = s.putItem(ctx, it, nil)
	}
	if err != nil {
		return fmt.Errorf("put marker %s/%s: %w", m.Group, m.Key, err)
	}
	return nil
}

// GetMarker returns the marker with one GetItem, or storage.ErrNotFound when
// it is absent or expired (Until not after the Store's clock).
func (s *Store) GetMarker(ctx context.Context, group, k string) (storage.Marker, error) {
	var it markerItem
	if err := s.getItem(ctx, markerKey(group, k), &it); err != nil {
		return storage.Marker{}, fmt.Errorf("get marker %s/%s: %w", group, k, err)
	}
	if it.Until <= s.now().UnixMilli() {
		return storage.Marker{}, fmt.Errorf("get marker %s/%s: expired: %w", group, k, storage.ErrNotFound)
	}
	return it.marker(group), nil
}

// DeleteMarker removes the marker with one DeleteItem (a missing one is not an error).
func (s *Store) DeleteMarker(ctx context.Context, group, k string) error {
	if err := s.deleteItem(ctx, markerKey(group, k), nil); err != nil {
		return fmt.Errorf("delete marker %s/%s: %w", group, k, err)
	}
	return nil
}

// ListMarkers returns up to n live markers of group (n <= 0: all) in key
// (UTF-8 byte) order: one Query of the group's partition, followed over its
// pages, expired markers filtered out by the server.
func (s *Store) ListMarkers(ctx context.Context, group string, n int) ([]storage.Marker, error) {
	out := []storage.Marker{}
	pk := markerPK(group)
	if len(pk) > maxPK {
		return out, nil // no item can have such a key
	}
	kc := expression.Key(attrPK).Equal(expression.Value(pk))
	live := expression.Name(attrUntil).GreaterThan(expression.Value(s.now().UnixMilli()))
	expr, err := expression.NewBuilder().WithKeyCondition(kc).WithFilter(live).Build()
	if err != nil {
		return nil, fmt.Errorf("list markers %s: build query: %w", group, err)
	}
	in := &dynamodb.QueryInput{
		TableName:                 aws.String(s.table),
		KeyConditionExpression:    expr.KeyCondition(),
		FilterExpression:          expr.Filter(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
		ConsistentRead:            aws.Bool(true),
	}
	for {
		if n > 0 {
			// Limit counts items read before the filter: ask for the number
			// still missing, and go on while pages end early.
			in.Limit = aws.Int32(int32(min(n-len(out), 1000)))
		}
		res, err := s.db.Query(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("list markers %s: %w", group, err)
		}
		var items []markerItem
		if err := attributevalue.UnmarshalListOfMaps(res.Items, &items); err != nil {
			return nil, fmt.Errorf("list markers %s: decode: %w", group, err)
		}
		for _, it := range items {
			out = append(out, it.marker(group))
		}
		if len(res.LastEvaluatedKey) == 0 || (n > 0 && len(out) >= n) {
			return out, nil
		}
		in.ExclusiveStartKey = res.LastEvaluatedKey
	}
}

// AcquireMarker writes m with one conditional PutItem: no marker at its key,
// or an expired one, or one with the same Value (its owner renewing).
// storage.ErrConflict otherwise, so of concurrent acquirers exactly one wins.
func (s *Store) AcquireMarker(ctx context.Context, m storage.Marker) error {
	it, err := newMarkerItem(m)
	if err == nil {
		cond := notLive(s.now()).Or(expression.Name(attrValue).Equal(expression.Value(m.Value)))
		err = s.putItem(ctx, it, &cond)
	}
	if err != nil {
		return fmt.Errorf("acquire marker %s/%s for %q: %w", m.Group, m.Key, m.Value, err)
	}
	return nil
}

// ReleaseMarker deletes the marker with one conditional DeleteItem when its
// Value is value, or it is missing or expired (all success);
// storage.ErrConflict when a live marker of another value holds the key.
func (s *Store) ReleaseMarker(ctx context.Context, group, k, value string) error {
	mk := markerKey(group, k)
	if !mk.fits() {
		return nil // nothing can be stored there
	}
	cond := notLive(s.now()).Or(expression.Name(attrValue).Equal(expression.Value(value)))
	err := s.deleteItem(ctx, mk, &cond)
	if errors.Is(err, storage.ErrConflict) {
		err = fmt.Errorf("held by another value: %w", err)
	}
	if err != nil {
		return fmt.Errorf("release marker %s/%s for %q: %w", group, k, value, err)
	}
	return nil
}
