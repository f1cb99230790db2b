package dynamo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/airlock-registry/airlock/shared/storage"
)

// manifestItem is a manifest (pk IMG#<repo>/<name>, sk M#<digest>). The body
// is stored inline when the registry passes it; otherwise BodyKey names the S3
// object (the registry keeps items under DynamoDB's 400 KB limit). Large
// bodies and digest lists are stored compressed in the *Gz attributes (pack.go).
type manifestItem struct {
	key
	Digest       string            `dynamodbav:"digest"`
	MediaType    string            `dynamodbav:"mediaType"`
	Size         int64             `dynamodbav:"size"`
	Body         []byte            `dynamodbav:"body,omitempty"`
	BodyGz       []byte            `dynamodbav:"bodyGz,omitempty"`
	BodyKey      string            `dynamodbav:"bodyKey,omitempty"`
	Blobs        []string          `dynamodbav:"blobs,omitempty"`
	BlobsGz      []byte            `dynamodbav:"blobsGz,omitempty"`
	Children     []string          `dynamodbav:"children,omitempty"`
	ChildrenGz   []byte            `dynamodbav:"childrenGz,omitempty"`
	Subject      string            `dynamodbav:"subject,omitempty"`
	ArtifactType string            `dynamodbav:"artifactType,omitempty"`
	Annotations  map[string]string `dynamodbav:"annotations,omitempty"`
	Created      time.Time         `dynamodbav:"created"`
	// Touched and Pulled (storage.Collector), epoch ms; 0 when not
	// recorded (Touched: items written before touch times).
	Touched int64 `dynamodbav:"touched,omitempty"`
	Pulled  int64 `dynamodbav:"pulled,omitempty"`
}

// manifestAttrs are the attributes of a manifest item but its body
// (listings: ListImage, Scan).
var manifestAttrs = []string{attrPK, attrSK, "digest", "mediaType", "size", "bodyKey", "blobs", "blobsGz",
	"children", "childrenGz", "subject", "artifactType", "annotations", "created", attrTouched, attrPulled}

// manifest decodes the item (its body too when it was read).
func (it manifestItem) manifest() (storage.Manifest, error) {
	m := storage.Manifest{
		Digest:       digest.Digest(it.Digest),
		MediaType:    it.MediaType,
		Size:         it.Size,
		BodyKey:      it.BodyKey,
		Subject:      digest.Digest(it.Subject),
		ArtifactType: it.ArtifactType,
		Annotations:  it.Annotations,
		Created:      it.Created,
		Touched:      fromMillis(it.Touched),
		Pulled:       fromMillis(it.Pulled),
	}
	var err error
	if m.Body, err = unpackBody(it.Body, it.BodyGz); err == nil {
		if m.Blobs, err = unpackDigests(it.Blobs, it.BlobsGz); err == nil {
			m.Children, err = unpackDigests(it.Children, it.ChildrenGz)
		}
	}
	return m, err
}

// referrerItem is the descriptor of a manifest with a subject
// (pk IMG#<repo>/<name>, sk R#<subject>#<digest>).
type referrerItem struct {
	key
	Digest       string            `dynamodbav:"digest"`
	MediaType    string            `dynamodbav:"mediaType"`
	Size         int64             `dynamodbav:"size"`
	ArtifactType string            `dynamodbav:"artifactType,omitempty"`
	Annotations  map[string]string `dynamodbav:"annotations,omitempty"`
	// Touched is when PutManifest wrote it, epoch ms (DeleteManifestIf).
	Touched int64 `dynamodbav:"touched,omitempty"`
}

func manifestKey(img storage.Image, d digest.Digest) key {
	return key{PK: imagePK(img), SK: prefixManifest + d.String()}
}

func referrerKey(img storage.Image, subject, d digest.Digest) key {
	return key{PK: imagePK(img), SK: prefixReferrer + subject.String() + "#" + d.String()}
}

// PutManifest writes the manifest item, touched now, then its referrer item
// (when it has a subject), then the catalog entry of img. Overwriting a
// stored manifest replaces the whole item: Pulled reads zero again until
// the next MarkPulled.
func (s *Store) PutManifest(ctx context.Context, img storage.Image, m storage.Manifest) error {
	it := manifestItem{
		key:          manifestKey(img, m.Digest),
		Digest:       m.Digest.String(),
		MediaType:    m.MediaType,
		Size:         m.Size,
		BodyKey:      m.BodyKey,
		Subject:      m.Subject.String(),
		ArtifactType: m.ArtifactType,
		Annotations:  m.Annotations,
		Created:      m.Created.UTC(),
		Touched:      toMillis(s.now()),
	}
	it.Body, it.BodyGz = packBody(m.Body)
	it.Blobs, it.BlobsGz = packDigests(m.Blobs)
	it.Children, it.ChildrenGz = packDigests(m.Children)
	if err := s.putItem(ctx, it, nil); err != nil {
		return fmt.Errorf("put manifest %s in %s: %w", m.Digest, img, err)
	}
	if m.Subject != "" {
		ref := referrerItem{
			key:          referrerKey(img, m.Subject, m.Digest),
			Digest:       m.Digest.String(),
			MediaType:    m.MediaType,
			Size:         m.Size,
			ArtifactType: m.ArtifactType,
			Annotations:  m.Annotations,
			Touched:      it.Touched,
		}
		if err := s.putItem(ctx, ref, nil); err != nil {
			return fmt.Errorf("put referrer %s of %s in %s: %w", m.Digest, m.Subject, img, err)
		}
	}
	if err := s.putItem(ctx, newCatalogItem(img), nil); err != nil {
		return fmt.Errorf("add %s to catalog: %w", img, err)
	}
	return nil
}

// GetManifest returns the manifest d of img, or storage.ErrNotFound.
func (s *Store) GetManifest(ctx context.Context, img storage.Image, d digest.Digest) (storage.Manifest, error) {
	var it manifestItem
	if err := s.getItem(ctx, manifestKey(img, d), &it); err != nil {
		return storage.Manifest{}, fmt.Errorf("get manifest %s in %s: %w", d, img, err)
	}
	m, err := it.manifest()
	if err != nil {
		return storage.Manifest{}, fmt.Errorf("get manifest %s in %s: %w", d, img, err)
	}
	return m, nil
}

// DeleteManifest deletes, in this order, the tags of img pointing at d, the
// referrer item of d and the manifest item, and then img's catalog entry
// when no manifest is left (dropFromCatalog); storage.ErrNotFound when there
// is no such manifest. A tag moved to another digest meanwhile is left alone.
func (s *Store) DeleteManifest(ctx context.Context, img storage.Image, d digest.Digest) error {
	var it manifestItem
	if err := s.getItem(ctx, manifestKey(img, d), &it); err != nil {
		return fmt.Errorf("delete manifest %s in %s: %w", d, img, err)
	}
	pointsAtD := expression.Name("digest").Equal(expression.Value(d.String()))
	tags, err := s.query(ctx, imagePK(img), prefixTag, "", &pointsAtD, 0)
	if err != nil {
		return fmt.Errorf("delete manifest %s in %s: list tags: %w", d, img, err)
	}
	for _, sk := range tags {
		err := s.deleteItem(ctx, key{PK: imagePK(img), SK: sk}, &pointsAtD)
		if err != nil && !errors.Is(err, storage.ErrConflict) {
			return fmt.Errorf("delete manifest %s in %s: delete tag %s: %w", d, img, strings.TrimPrefix(sk, prefixTag), err)
		}
	}
	if it.Subject != "" {
		if err := s.deleteItem(ctx, referrerKey(img, digest.Digest(it.Subject), d), nil); err != nil {
			return fmt.Errorf("delete manifest %s in %s: delete referrer: %w", d, img, err)
		}
	}
	if err := s.deleteItem(ctx, manifestKey(img, d), nil); err != nil {
		return fmt.Errorf("delete manifest %s in %s: %w", d, img, err)
	}
	if err := s.dropFromCatalog(ctx, img); err != nil {
		return fmt.Errorf("delete manifest %s in %s: deleted, but catalog entry: %w", d, img, err)
	}
	return nil
}

// ListReferrers returns the descriptors of the manifests of img whose subject
// is subject, in digest order.
func (s *Store) ListReferrers(ctx context.Context, img storage.Image, subject digest.Digest) ([]ocispec.Descriptor, error) {
	prefix := prefixReferrer + subject.String() + "#"
	out := []ocispec.Descriptor{}
	if !(key{PK: imagePK(img), SK: prefix}).fits() {
		return out, nil // no item can have such a key
	}
	kc := expression.Key(attrPK).Equal(expression.Value(imagePK(img))).
		And(expression.Key(attrSK).BeginsWith(prefix))
	expr, err := expression.NewBuilder().WithKeyCondition(kc).Build()
	if err != nil {
		return nil, fmt.Errorf("list referrers: build query: %w", err)
	}
	p := dynamodb.NewQueryPaginator(s.db, &dynamodb.QueryInput{
		TableName:                 aws.String(s.table),
		KeyConditionExpression:    expr.KeyCondition(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
		ConsistentRead:            aws.Bool(true),
	})
	for p.HasMorePages() {
		res, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list referrers of %s in %s: %w", subject, img, err)
		}
		var items []referrerItem
		if err := attributevalue.UnmarshalListOfMaps(res.Items, &items); err != nil {
			return nil, fmt.Errorf("list referrers of %s in %s: decode: %w", subject, img, err)
		}
		for _, r := range items {
			out = append(out, ocispec.Descriptor{
				MediaType:    r.MediaType,
				Digest:       digest.Digest(r.Digest),
				Size:         r.Size,
				ArtifactType: r.ArtifactType,
				Annotations:  r.Annotations,
			})
		}
	}
	return out, nil
}

// ListImages returns up to n catalog names strictly after last, in lexical
// (UTF-8 byte) order.
func (s *Store) ListImages(ctx context.Context, last string, n int) (storage.Page, error) {
	names, err := s.query(ctx, pkCatalog, "", last, nil, limitFor(n))
	if err != nil {
		return storage.Page{}, fmt.Errorf("list images after %q: %w", last, err)
	}
	return page(names, n), nil
}

// HasImage reads img's catalog entry (one consistent GetItem).
func (s *Store) HasImage(ctx context.Context, img storage.Image) (bool, error) {
	var it catalogItem
	err := s.getItem(ctx, catalogKey(img), &it)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read catalog entry of %s: %w", img, err)
	}
	return true, nil
}

// limitFor is the number of items to read for a page of n: one more tells
// whether more exist.
func limitFor(n int) int {
	if n <= 0 {
		return 0
	}
	return n + 1
}
