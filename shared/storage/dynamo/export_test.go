package dynamo

// SetSearchPage sets the Limit of SearchImages' Query pages (tests of paging).
func SetSearchPage(s *Store, n int32) { s.searchPage = n }
