package dynamo

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/storage"
)

var _ storage.Collector = (*Store)(nil)

// storage.Collector. Touch times are Number attributes of epoch ms by the
// Store's clock: touched (blob records, links, manifests), pulled
// (manifests, MarkPulled) and at (tags: when last written). A conditional
// delete "not touched since cut" is
//
//	attribute_exists(pk) AND (touched < :cut OR
//	    (attribute_not_exists(touched) AND created < :cutSecond))
//
// where items written before touch times were recorded compare their
// created attribute (an RFC 3339 string) with cut truncated to the second
// and written without a zone ("2026-05-04T03:02:01"): every created time in
// that second or later sorts after it, earlier ones before, so such an item
// is deleted only when it was created before cut's second (never one
// created at or after cut). Only the purge function calls Scan: it alone
// has dynamodb:Scan (template.yaml).

// Attribute names of touch times.
const (
	attrTouched = "touched"
	attrPulled  = "pulled"
	attrAt      = "at"
	attrCreated = "created"
	attrDigest  = "digest"
)

// Partition-key prefixes the Scan classifies by (dynamo.go lists the items).
const (
	prefixImagePK  = "IMG#"
	prefixBlobPK   = "BLOB#"
	prefixUploadPK = "UPLOAD#"
	prefixMarkerPK = "MARK#"
)

// scanAttrs are the attributes Scan reads: every attribute of every item
// but manifest bodies.
var scanAttrs = append(append([]string{}, manifestAttrs...),
	"s3key", attrAt, attrChecked, // links, blob records, tags
	"id", "repo", "name", "offset", "multipartId", "parts", "staged", "hashAlg", "hashState", // upload sessions
	"lease", "leaseUntil", attrExpires, "updated",
	attrValue, "count", attrUntil) // markers

// projection builds the projection expression of attrs.
func projection(attrs []string) expression.ProjectionBuilder {
	names := make([]expression.NameBuilder, len(attrs))
	for i, a := range attrs {
		names[i] = expression.Name(a)
	}
	return expression.NamesList(names[0], names[1:]...)
}

// touch sets attribute attr of the item at k to now (epoch ms) with one
// UpdateItem on condition that the item exists; storage.ErrNotFound when
// it does not. When out is set it receives the item as updated (ALL_NEW).
func (s *Store) touch(ctx context.Context, k key, attr string, now time.Time, out any, more ...string) error {
	if !k.fits() {
		return storage.ErrNotFound
	}
	upd := expression.Set(expression.Name(attr), expression.Value(toMillis(now)))
	for _, a := range more {
		upd = upd.Set(expression.Name(a), expression.Value(toMillis(now)))
	}
	expr, err := expression.NewBuilder().WithUpdate(upd).WithCondition(*mustExist()).Build()
	if err != nil {
		return fmt.Errorf("build update: %w", err)
	}
	in := &dynamodb.UpdateItemInput{
		TableName:                 aws.String(s.table),
		Key:                       k.av(),
		UpdateExpression:          expr.Update(),
		ConditionExpression:       expr.Condition(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
	}
	if out != nil {
		in.ReturnValues = types.ReturnValueAllNew
	}
	res, err := s.db.UpdateItem(ctx, in)
	if conditionFailed(err) {
		return storage.ErrNotFound
	}
	if err != nil {
		return err
	}
	return decodeItem(res.Attributes, k, out)
}

// TouchLink sets the touch time of the link of d in img to now with one
// conditional UpdateItem and returns the link; storage.ErrNotFound when
// there is none.
func (s *Store) TouchLink(ctx context.Context, img storage.Image, d digest.Digest) (storage.Blob, error) {
	var it blobItem
	if err := s.touch(ctx, linkKey(img, d), attrTouched, s.now(), &it); err != nil {
		return storage.Blob{}, fmt.Errorf("touch link %s in %s: %w", d, img, err)
	}
	return it.blob(), nil
}

// TouchManifest sets the touch time of manifest d of img to now with one
// conditional UpdateItem; storage.ErrNotFound when it is not stored.
func (s *Store) TouchManifest(ctx context.Context, img storage.Image, d digest.Digest) error {
	if err := s.touch(ctx, manifestKey(img, d), attrTouched, s.now(), nil); err != nil {
		return fmt.Errorf("touch manifest %s in %s: %w", d, img, err)
	}
	return nil
}

// MarkPulled sets pulled of manifest d of img to now with one conditional
// UpdateItem; storage.ErrNotFound when it is not stored.
func (s *Store) MarkPulled(ctx context.Context, img storage.Image, d digest.Digest) error {
	// A pull touches the manifest too: proxy-evict's conditional delete
	// then spares a manifest pulled after its listing.
	if err := s.touch(ctx, manifestKey(img, d), attrPulled, s.now(), nil, attrTouched); err != nil {
		return fmt.Errorf("mark manifest %s in %s pulled: %w", d, img, err)
	}
	return nil
}

// entryOf decodes one item read with scanAttrs.
func entryOf(item map[string]types.AttributeValue) (storage.Entry, error) {
	var k key
	if err := attributevalue.UnmarshalMap(item, &k); err != nil {
		return storage.Entry{}, fmt.Errorf("decode key: %w", err)
	}
	var e storage.Entry
	var err error
	switch {
	case strings.HasPrefix(k.PK, prefixImagePK):
		repo, name, _ := strings.Cut(strings.TrimPrefix(k.PK, prefixImagePK), "/") // repository names have no "/"
		e.Image = storage.Image{Repo: repo, Name: name}
		switch {
		case strings.HasPrefix(k.SK, prefixTag):
			var it tagCheckItem
			if err = attributevalue.UnmarshalMap(item, &it); err == nil {
				e.Kind = storage.EntryTag
				e.Tag = storage.TagItem{Tag: strings.TrimPrefix(k.SK, prefixTag), Digest: digest.Digest(it.Digest), Updated: fromMillis(it.At)}
			}
		case strings.HasPrefix(k.SK, prefixManifest):
			var it manifestItem
			if err = attributevalue.UnmarshalMap(item, &it); err == nil {
				e.Kind = storage.EntryManifest
				e.Manifest, err = it.manifest()
				e.Manifest.Body = nil
			}
		case strings.HasPrefix(k.SK, prefixLink):
			var it blobItem
			if err = attributevalue.UnmarshalMap(item, &it); err == nil {
				e.Kind, e.Blob = storage.EntryLink, it.blob()
			}
		}
	case strings.HasPrefix(k.PK, prefixBlobPK) && k.SK == skBlob:
		var it blobItem
		if err = attributevalue.UnmarshalMap(item, &it); err == nil {
			e.Kind, e.Blob = storage.EntryBlob, it.blob()
		}
	case strings.HasPrefix(k.PK, prefixUploadPK) && k.SK == skUpload:
		var it uploadItem
		if err = attributevalue.UnmarshalMap(item, &it); err == nil {
			e.Kind, e.Upload = storage.EntryUpload, it.upload()
		}
	case strings.HasPrefix(k.PK, prefixMarkerPK):
		var it markerItem
		if err = attributevalue.UnmarshalMap(item, &it); err == nil {
			e.Kind, e.Marker = storage.EntryMarker, it.marker(strings.TrimPrefix(k.PK, prefixMarkerPK))
		}
	}
	if err != nil {
		return storage.Entry{}, fmt.Errorf("decode item %s %s: %w", k.PK, k.SK, err)
	}
	return e, nil
}

// ListImage returns every tag, manifest (without body) and link of img:
// one strongly consistent Query of its partition per 1 MB of items,
// projected without manifest bodies, in key order (tags by name, manifests
// and links by digest).
func (s *Store) ListImage(ctx context.Context, img storage.Image) (storage.ImageItems, error) {
	out := storage.ImageItems{Image: img}
	pk := imagePK(img)
	if len(pk) > maxPK {
		return out, nil // no item can have such a key
	}
	expr, err := expression.NewBuilder().
		WithKeyCondition(expression.Key(attrPK).Equal(expression.Value(pk))).
		WithProjection(projection(scanAttrs)).Build()
	if err != nil {
		return out, fmt.Errorf("list image %s: build query: %w", img, err)
	}
	p := dynamodb.NewQueryPaginator(s.db, &dynamodb.QueryInput{
		TableName:                 aws.String(s.table),
		KeyConditionExpression:    expr.KeyCondition(),
		ProjectionExpression:      expr.Projection(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
		ConsistentRead:            aws.Bool(true),
	})
	for p.HasMorePages() {
		res, err := p.NextPage(ctx)
		if err != nil {
			return storage.ImageItems{Image: img}, fmt.Errorf("list image %s: %w", img, err)
		}
		for _, item := range res.Items {
			e, err := entryOf(item)
			if err != nil {
				return storage.ImageItems{Image: img}, fmt.Errorf("list image %s: %w", img, err)
			}
			switch e.Kind {
			case storage.EntryTag:
				out.Tags = append(out.Tags, e.Tag)
			case storage.EntryManifest:
				out.Manifests = append(out.Manifests, e.Manifest)
			case storage.EntryLink:
				out.Links = append(out.Links, e.Blob)
			}
		}
	}
	return out, nil
}

// scanCursor is the opaque form of a Scan's LastEvaluatedKey.
type scanCursor struct {
	PK string `json:"pk"`
	SK string `json:"sk"`
}

// Scan returns the items of one page of a strongly consistent table Scan
// (Limit n; n <= 0: DynamoDB's 1 MB page) after cursor, projected without
// manifest bodies, and the cursor of the next page ("" when the Scan is
// done). The cursor is LastEvaluatedKey, base64url-encoded JSON; a
// malformed one is an error. Items the purge does not look at are
// storage.EntryOther (catalog entries, referrer items, upload index
// entries).
func (s *Store) Scan(ctx context.Context, cursor string, n int) ([]storage.Entry, string, error) {
	expr, err := expression.NewBuilder().WithProjection(projection(scanAttrs)).Build()
	if err != nil {
		return nil, "", fmt.Errorf("scan: build projection: %w", err)
	}
	in := &dynamodb.ScanInput{
		TableName:                aws.String(s.table),
		ProjectionExpression:     expr.Projection(),
		ExpressionAttributeNames: expr.Names(),
		ConsistentRead:           aws.Bool(true),
	}
	if n > 0 {
		in.Limit = aws.Int32(int32(min(n, 1<<20)))
	}
	if cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(cursor)
		var c scanCursor
		if err == nil {
			err = json.Unmarshal(b, &c)
		}
		k := key{PK: c.PK, SK: c.SK}
		if err != nil || k.PK == "" || k.SK == "" || !k.fits() {
			return nil, "", fmt.Errorf("scan: malformed cursor %.40q (pass \"\" or the cursor a Scan returned)", cursor)
		}
		in.ExclusiveStartKey = k.av()
	}
	res, err := s.db.Scan(ctx, in)
	if err != nil {
		return nil, "", fmt.Errorf("scan: %w", err)
	}
	out := make([]storage.Entry, 0, len(res.Items))
	for _, item := range res.Items {
		e, err := entryOf(item)
		if err != nil {
			return nil, "", fmt.Errorf("scan: %w", err)
		}
		out = append(out, e)
	}
	next := ""
	if len(res.LastEvaluatedKey) > 0 {
		var k key
		if err := attributevalue.UnmarshalMap(res.LastEvaluatedKey, &k); err != nil {
			return nil, "", fmt.Errorf("scan: decode LastEvaluatedKey: %w", err)
		}
		b, _ := json.Marshal(scanCursor{PK: k.PK, SK: k.SK}) // strings marshal
		next = base64.RawURLEncoding.EncodeToString(b)
	}
	return out, next, nil
}

// notTouchedSince is the condition "touched (or, without a touch time,
// created) before cut" (the comment at the top of this file).
func notTouchedSince(cut time.Time) expression.ConditionBuilder {
	second := cut.UTC().Truncate(time.Second).Format("2006-01-02T15:04:05")
	return expression.Name(attrTouched).LessThan(expression.Value(cut.UnixMilli())).
		Or(expression.AttributeNotExists(expression.Name(attrTouched)).
			And(expression.Name(attrCreated).LessThan(expression.Value(second))))
}

// deleteIf deletes the item at k on condition that it exists and meets
// cond: storage.ErrNotFound when it does not exist, storage.ErrConflict
// when it does not meet cond (DynamoDB returns the item that failed the
// condition, ReturnValuesOnConditionCheckFailure; an emulator that does
// not costs one more read). When old is set it receives the deleted item.
func (s *Store) deleteIf(ctx context.Context, k key, cond expression.ConditionBuilder, old any) error {
	if !k.fits() {
		return storage.ErrNotFound
	}
	expr, err := expression.NewBuilder().WithCondition(expression.AttributeExists(expression.Name(attrPK)).And(cond)).Build()
	if err != nil {
		return fmt.Errorf("build condition: %w", err)
	}
	in := &dynamodb.DeleteItemInput{
		TableName:                           aws.String(s.table),
		Key:                                 k.av(),
		ConditionExpression:                 expr.Condition(),
		ExpressionAttributeNames:            expr.Names(),
		ExpressionAttributeValues:           expr.Values(),
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}
	if old != nil {
		in.ReturnValues = types.ReturnValueAllOld
	}
	res, err := s.db.DeleteItem(ctx, in)
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		if len(ccf.Item) > 0 {
			return storage.ErrConflict
		}
		var exists key
		switch gerr := s.getItem(ctx, k, &exists); {
		case errors.Is(gerr, storage.ErrNotFound):
			return storage.ErrNotFound
		case gerr != nil:
			return fmt.Errorf("condition failed; reading the item: %w", gerr)
		}
		return storage.ErrConflict
	}
	if err != nil {
		return err
	}
	return decodeItem(res.Attributes, k, old)
}

// DeleteLinkIf deletes the link of d from img with one conditional
// DeleteItem unless it was touched at or after cut (storage.ErrConflict);
// storage.ErrNotFound when there is none.
func (s *Store) DeleteLinkIf(ctx context.Context, img storage.Image, d digest.Digest, cut time.Time) error {
	if err := s.deleteIf(ctx, linkKey(img, d), notTouchedSince(cut), nil); err != nil {
		return fmt.Errorf("delete link %s from %s (cut %s): %w", d, img, cut.UTC().Format(time.RFC3339Nano), err)
	}
	return nil
}

// DeleteBlobIf deletes the global record of d with one conditional
// DeleteItem unless it was touched at or after cut (storage.ErrConflict);
// storage.ErrNotFound when there is none.
func (s *Store) DeleteBlobIf(ctx context.Context, d digest.Digest, cut time.Time) error {
	if err := s.deleteIf(ctx, blobKey(d), notTouchedSince(cut), nil); err != nil {
		return fmt.Errorf("delete blob record %s (cut %s): %w", d, cut.UTC().Format(time.RFC3339Nano), err)
	}
	return nil
}

// DeleteManifestIf deletes manifest d of img unless it was touched at or
// after cut, and then what refers to it, in this order:
//
//  1. the manifest item, with one conditional DeleteItem (ALL_OLD: its
//     subject names the referrer item). When the condition fails
//     (storage.ErrConflict, or storage.ErrNotFound) nothing else is deleted:
//     a touched manifest keeps its tags.
//  2. the tags of img pointing at d and not written at or after cut (one
//     Query, then one DeleteItem each on condition digest = d and at < cut);
//  3. its referrer item, unless written at or after cut;
//  4. img's catalog entry when no manifest is left (dropFromCatalog).
//
// The manifest goes first, unlike DeleteManifest's reverse order of writes,
// because its condition decides whether anything goes. Between 1 and 2 a
// tag points at a missing manifest: a read then sees what a read racing
// DeleteManifest between its tag and manifest deletes sees anyway (a
// manifest GET by that tag answers MANIFEST_UNKNOWN; a proxy fetches the
// tag again). A crash there leaves such tags: ListImage lists them with
// no manifest of their digest, for the purge to remove (DeleteTagIf). Tags
// written at or after cut stay: a push of d racing this delete writes the
// manifest again before its tag (the registry's order), so such a tag
// points at a stored manifest, and no conditional delete removes anything
// written at or after cut.
func (s *Store) DeleteManifestIf(ctx context.Context, img storage.Image, d digest.Digest, cut time.Time) error {
	var it manifestItem
	if err := s.deleteIf(ctx, manifestKey(img, d), notTouchedSince(cut), &it); err != nil {
		return fmt.Errorf("delete manifest %s in %s (cut %s): %w", d, img, cut.UTC().Format(time.RFC3339Nano), err)
	}
	oldTag := expression.Name(attrDigest).Equal(expression.Value(d.String())).
		And(expression.AttributeNotExists(expression.Name(attrAt)).
			Or(expression.Name(attrAt).LessThan(expression.Value(cut.UnixMilli()))))
	tags, err := s.query(ctx, imagePK(img), prefixTag, "", &oldTag, 0)
	if err != nil {
		return fmt.Errorf("delete manifest %s in %s: deleted, but listing its tags: %w", d, img, err)
	}
	for _, sk := range tags {
		err := s.deleteItem(ctx, key{PK: imagePK(img), SK: sk}, &oldTag)
		if err != nil && !errors.Is(err, storage.ErrConflict) { // conflict: moved or rewritten meanwhile
			return fmt.Errorf("delete manifest %s in %s: deleted, but tag %s: %w", d, img, strings.TrimPrefix(sk, prefixTag), err)
		}
	}
	if it.Subject != "" {
		// Not one a racing push wrote again (items without touched are older).
		cond := expression.AttributeNotExists(expression.Name(attrTouched)).
			Or(expression.Name(attrTouched).LessThan(expression.Value(cut.UnixMilli())))
		err := s.deleteItem(ctx, referrerKey(img, digest.Digest(it.Subject), d), &cond)
		if err != nil && !errors.Is(err, storage.ErrConflict) {
			return fmt.Errorf("delete manifest %s in %s: deleted, but its referrer item: %w", d, img, err)
		}
	}
	if err := s.dropFromCatalog(ctx, img); err != nil {
		return fmt.Errorf("delete manifest %s in %s: deleted, but catalog entry: %w", d, img, err)
	}
	return nil
}

// DeleteTagIf deletes tag from img with one DeleteItem on condition that
// it points at d; storage.ErrConflict when it points elsewhere,
// storage.ErrNotFound when there is none.
func (s *Store) DeleteTagIf(ctx context.Context, img storage.Image, want storage.TagItem) error {
	at := expression.AttributeNotExists(expression.Name(attrAt))
	if !want.Updated.IsZero() {
		at = expression.Name(attrAt).Equal(expression.Value(want.Updated.UnixMilli()))
	}
	cond := expression.Name(attrDigest).Equal(expression.Value(want.Digest.String())).And(at)
	if err := s.deleteIf(ctx, tagKey(img, want.Tag), cond, nil); err != nil {
		return fmt.Errorf("delete tag %s:%s of %s: %w", img, want.Tag, want.Digest, err)
	}
	return nil
}
