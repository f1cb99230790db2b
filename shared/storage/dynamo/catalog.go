package dynamo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"

	"github.com/airlock-registry/airlock/shared/storage"
)

var _ storage.Searcher = (*Store)(nil)

// Attribute names of catalog items.
const (
	attrName  = "name"
	attrToken = "token"
)

// defaultSearchPage is how many catalog items one Query page of
// SearchImages reads when n > 0 (a few KB, a dozen read units): DynamoDB's
// Limit counts items before the filter, so a page must be large to find
// sparse matches in few round trips, and bounded so a short search of a
// large catalog does not read 1 MB.
const defaultSearchPage = 1000

// catalogItem is an image's catalog entry (pk CATALOG, sk <repo>/<name>).
//
// Name is the full name lower-cased (ASCII), for SearchImages' filter: a
// Query's filter cannot name key attributes, so it cannot read sk. Entries
// written before Name existed have none; SearchImages still finds them.
//
// Token is random and new at every PutManifest. DeleteManifest removes the
// entry only while it still holds the token read before checking that the
// image has no manifest left (dropFromCatalog), which makes the removal safe
// against a racing PutManifest without transactions or clocks.
type catalogItem struct {
	key
	Name  string `dynamodbav:"name,omitempty"`
	Token string `dynamodbav:"token,omitempty"`
}

func catalogKey(img storage.Image) key { return key{PK: pkCatalog, SK: img.String()} }

// newCatalogItem returns img's catalog entry with a new token.
func newCatalogItem(img storage.Image) catalogItem {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read does not fail
	return catalogItem{key: catalogKey(img), Name: lowerASCII(img.String()), Token: hex.EncodeToString(b)}
}

// dropFromCatalog removes img's catalog entry when img has no manifest left:
// called by DeleteManifest after it deleted a manifest item. Three calls, in
// this order:
//
//	G  GetItem of the catalog entry, to read its token t (absent: done);
//	Q  Query of img's M# items, limit 1 (one found: done, the entry stays);
//	X  DeleteItem of the entry on condition token = t (lost: done, it stays).
//
// Why a PutManifest P of img that races this delete D can never end with
// its manifest stored and no catalog entry: P writes its manifest item (MP)
// and then the entry with a fresh token (WP). Every call is strongly
// consistent and G, Q and X run one after the other. X removes an entry
// only if it still holds t when X runs, so WP cannot have happened between
// G and X (it would have replaced t); if WP happened after X, the entry is
// there at the end. Otherwise WP happened before G, so MP happened before
// G and hence before Q: Q, which found no manifest, ran after MP, so P's
// manifest item was deleted by then (by D itself when it deleted the same
// digest, or by another DeleteManifest), and it is stored at the end only
// if a later PutManifest wrote it again, to which the same argument
// applies. Two deletes racing for an image's last two
// manifests cannot both keep the entry: the one whose Q runs last sees
// neither manifest. No clock is involved, so Lambda instances with skewed
// clocks are no risk.
//
// What may be left is the harmless reverse: an entry whose manifests are
// all gone (a crash between the manifest's delete and X, or P overwriting
// the very digest D deletes just before D's delete of it). An entry without
// a token (written before tokens existed) is removed on condition that it
// still has none.
func (s *Store) dropFromCatalog(ctx context.Context, img storage.Image) error {
	var cat catalogItem
	err := s.getItem(ctx, catalogKey(img), &cat)
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read entry: %w", err)
	}
	left, err := s.query(ctx, imagePK(img), prefixManifest, "", nil, 1)
	if err != nil {
		return fmt.Errorf("list manifests left: %w", err)
	}
	if len(left) > 0 {
		return nil
	}
	cond := expression.AttributeNotExists(expression.Name(attrToken))
	if cat.Token != "" {
		cond = expression.Name(attrToken).Equal(expression.Value(cat.Token))
	}
	err = s.deleteItem(ctx, catalogKey(img), &cond)
	if err != nil && !errors.Is(err, storage.ErrConflict) { // conflict: rewritten by a PutManifest, or gone
		return fmt.Errorf("remove entry: %w", err)
	}
	return nil
}

// SearchImages returns up to n (n <= 0: all) catalog names containing query
// (ASCII case-insensitive), in lexical order: one Query of the CATALOG
// partition, paged until n names are found, with the filter
// contains(name, lower(query)) or attribute_not_exists(name) — entries
// written before the name attribute pass the filter and, like all, are
// checked on their sort key here.
func (s *Store) SearchImages(ctx context.Context, query string, n int) ([]string, error) {
	q := lowerASCII(query)
	out := []string{}
	if len(q) > maxSK {
		return out, nil // no name is that long
	}
	var filter *expression.ConditionBuilder
	if q != "" {
		f := expression.Contains(expression.Name(attrName), q).Or(expression.AttributeNotExists(expression.Name(attrName)))
		filter = &f
	}
	names, err := s.queryKeys(ctx, pkCatalog, "", "", filter, n, func(sk string) bool { return strings.Contains(lowerASCII(sk), q) }, s.searchPage)
	if err != nil {
		return nil, fmt.Errorf("search images for %q: %w", query, err)
	}
	return append(out, names...), nil
}

// lowerASCII lower-cases the ASCII letters of s and keeps every other byte.
func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}
