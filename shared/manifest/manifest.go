// Package manifest validates image manifests and indexes (OCI and Docker
// schema 2) and extracts what the registry stores of them: the blobs and
// child manifests they reference, the subject (referrers API), the artifact
// type. Pushes (hosted repositories) and proxy cache fills use the same
// rules. Foreign layers (descriptors with urls, e.g. Windows base layers)
// live outside the registry and are not counted as referenced blobs.
package manifest

import (
	"encoding/json"
	"fmt"
	"mime"
	"strings"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/airlock-registry/airlock/shared/storage"
)

// Media types the registry stores.
const (
	DockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	DockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	OCIManifest    = ocispec.MediaTypeImageManifest
	OCIIndex       = ocispec.MediaTypeImageIndex
	// DockerForeign is a Docker foreign layer: it lives outside the registry.
	DockerForeign = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)

const (
	// MaxSize is the largest manifest accepted.
	MaxSize = 4 << 20
	// maxReferences caps the blobs and child manifests one manifest may
	// reference, so that its item (which lists them) stays under 400 KB.
	maxReferences = 4096
	// maxReferrerAnnotations caps the annotations copied into a referrer
	// descriptor; larger ones are left out of the referrers list.
	maxReferrerAnnotations = 16 << 10
)

// InvalidError is a manifest that cannot be stored; its message says why.
type InvalidError struct{ Msg string }

func (e *InvalidError) Error() string { return e.Msg }

func invalid(format string, args ...any) error {
	return &InvalidError{Msg: fmt.Sprintf(format, args...)}
}

// IsIndex reports whether mt is an index media type.
func IsIndex(mt string) bool { return mt == DockerList || mt == OCIIndex }

// doc is the union of the fields of image manifests and indexes.
type doc struct {
	SchemaVersion *int                 `json:"schemaVersion"`
	MediaType     string               `json:"mediaType"`
	ArtifactType  string               `json:"artifactType"`
	Config        *ocispec.Descriptor  `json:"config"`
	Layers        []ocispec.Descriptor `json:"layers"`
	Manifests     []ocispec.Descriptor `json:"manifests"`
	Subject       *ocispec.Descriptor  `json:"subject"`
	Annotations   map[string]string    `json:"annotations"`
}

func checkDescriptor(where string, d ocispec.Descriptor) error {
	if err := d.Digest.Validate(); err != nil {
		return invalid("%s: invalid digest %q: %v", where, d.Digest, err)
	}
	if d.Size < 0 {
		return invalid("%s: negative size %d", where, d.Size)
	}
	if d.MediaType == "" {
		return invalid("%s: mediaType is required", where)
	}
	return nil
}

// IsForeign reports whether a layer descriptor is a foreign layer.
func IsForeign(d ocispec.Descriptor) bool {
	return len(d.URLs) > 0 && (d.MediaType == DockerForeign || strings.Contains(d.MediaType, "nondistributable"))
}

// Parse validates a manifest body (contentType may be "": the body's
// mediaType is used) and returns what is stored of it (Digest, Size, Body
// and Created are left to the caller). Errors are *InvalidError.
func Parse(contentType string, body []byte) (storage.Manifest, error) {
	m, _, _, err := parse(contentType, body)
	return m, err
}

// Described is a descriptor of a blob an image manifest references, with
// where it is in the manifest ("config", "layers[2]").
type Described struct {
	Where string
	ocispec.Descriptor
}

// ParseBlobs is Parse that also returns the image manifest's blob
// descriptors (config, then layers; foreign layers left out) in manifest
// order, repeated digests included (none for an index).
func ParseBlobs(contentType string, body []byte) (storage.Manifest, []Described, error) {
	m, _, blobs, err := parse(contentType, body)
	return m, blobs, err
}

// ForeignLayers returns the foreign layers of a valid image manifest.
func ForeignLayers(contentType string, body []byte) []ocispec.Descriptor {
	_, f, _, _ := parse(contentType, body)
	return f
}

func parse(contentType string, body []byte) (storage.Manifest, []ocispec.Descriptor, []Described, error) {
	var m storage.Manifest
	mt := contentType
	if mt != "" {
		if parsed, _, err := mime.ParseMediaType(mt); err == nil {
			mt = parsed
		}
	}
	var d doc
	if err := json.Unmarshal(body, &d); err != nil {
		return m, nil, nil, invalid("manifest is not valid JSON: %v", err)
	}
	if mt == "" {
		mt = d.MediaType
	}
	switch mt {
	case DockerManifest, DockerList, OCIManifest, OCIIndex:
	case "":
		return m, nil, nil, invalid("the manifest's media type is unknown: set Content-Type")
	default:
		return m, nil, nil, invalid("unsupported manifest media type %q (supported: %s, %s, %s, %s)", mt, OCIManifest, OCIIndex, DockerManifest, DockerList)
	}
	if d.MediaType != "" && d.MediaType != mt {
		return m, nil, nil, invalid("Content-Type %q does not match the manifest's mediaType %q", mt, d.MediaType)
	}
	if d.SchemaVersion == nil || *d.SchemaVersion != 2 {
		return m, nil, nil, invalid("schemaVersion must be 2")
	}
	m.MediaType, m.ArtifactType = mt, d.ArtifactType
	var foreign []ocispec.Descriptor
	var blobs []Described
	if IsIndex(mt) {
		if d.Config != nil || d.Layers != nil {
			return m, nil, nil, invalid("an index has no config or layers")
		}
		if d.Manifests == nil {
			return m, nil, nil, invalid("an index needs a manifests list")
		}
		for i, desc := range d.Manifests {
			if err := checkDescriptor(fmt.Sprintf("manifests[%d]", i), desc); err != nil {
				return m, nil, nil, err
			}
			m.Children = append(m.Children, desc.Digest)
		}
	} else {
		if d.Manifests != nil {
			return m, nil, nil, invalid("an image manifest has no manifests list")
		}
		if d.Config == nil {
			return m, nil, nil, invalid("an image manifest needs a config")
		}
		if err := checkDescriptor("config", *d.Config); err != nil {
			return m, nil, nil, err
		}
		m.Blobs = append(m.Blobs, d.Config.Digest)
		blobs = append(blobs, Described{"config", *d.Config})
		if m.ArtifactType == "" && d.Subject != nil {
			m.ArtifactType = d.Config.MediaType
		}
		for i, desc := range d.Layers {
			if err := checkDescriptor(fmt.Sprintf("layers[%d]", i), desc); err != nil {
				return m, nil, nil, err
			}
			if IsForeign(desc) {
				foreign = append(foreign, desc) // foreign layers live outside the registry
				continue
			}
			m.Blobs = append(m.Blobs, desc.Digest)
			blobs = append(blobs, Described{fmt.Sprintf("layers[%d]", i), desc})
		}
	}
	m.Blobs, m.Children = Dedupe(m.Blobs), Dedupe(m.Children)
	if n := len(m.Blobs) + len(m.Children); n > maxReferences {
		return m, nil, nil, invalid("the manifest references %d blobs and manifests; the limit is %d", n, maxReferences)
	}
	if d.Subject != nil {
		if err := checkDescriptor("subject", *d.Subject); err != nil {
			return m, nil, nil, err
		}
		m.Subject = d.Subject.Digest
		// Annotations are kept only for the referrers list, and only when they
		// are small: the manifest's item must stay under DynamoDB's 400 KB.
		if a, _ := json.Marshal(d.Annotations); len(a) <= maxReferrerAnnotations {
			m.Annotations = d.Annotations
		}
	}
	return m, foreign, blobs, nil
}

// Dedupe removes repeated digests, keeping the first of each.
func Dedupe(ds []digest.Digest) []digest.Digest {
	seen := make(map[digest.Digest]bool, len(ds))
	out := ds[:0]
	for _, d := range ds {
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}

// inlineSize is the largest body kept in the DynamoDB item; larger bodies go
// to S3 (an item is at most 400 KB).
const inlineSize = 350 << 10

// Inline reports whether the manifest's item, with its body kept inline,
// stays under inlineSize; otherwise the body belongs in S3.
func Inline(body []byte, m storage.Manifest) bool {
	n := len(body) + 1024
	for _, d := range m.Blobs {
		n += len(d) + 8
	}
	for _, d := range m.Children {
		n += len(d) + 8
	}
	for k, v := range m.Annotations {
		n += len(k) + len(v) + 8
	}
	return n <= inlineSize
}
