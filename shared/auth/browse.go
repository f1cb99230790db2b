package auth

import (
	"slices"

	"github.com/airlock-registry/airlock/shared/config"
)

// CanBrowseRepository reports whether id may see repository repo in the
// browse UI's list of repositories: anyone when the repository has
// anonymousPull, admins, and callers one of whose roles (or anonymous's)
// has a privilege naming repo (or "*") with browse or read. Selectors are
// not evaluated here (a privilege may cover only some images); each image
// is checked with Can as it is listed.
func (s *Service) CanBrowseRepository(id Identity, repo string) bool {
	if rc, ok := s.cfg.Repository(repo); ok && rc.AnonymousPull {
		return true
	}
	for _, name := range append(slices.Clip(id.Roles), s.cfg.Auth.Anonymous...) {
		if name == config.AdminRole {
			return true
		}
		r, ok := s.cfg.Auth.Role(name)
		if !ok {
			continue
		}
		for _, p := range r.Privileges {
			if (slices.Contains(p.Actions, config.ActionBrowse) || slices.Contains(p.Actions, config.ActionRead)) &&
				(slices.Contains(p.Repositories, "*") || slices.Contains(p.Repositories, repo)) {
				return true
			}
		}
	}
	return false
}
