//go:build !linux

package stream

import "time"

// Park implements wire.Parker: only Linux parks (epoll).
func (s *tlsSource) Park(time.Time, func()) bool { return false }

// Wake implements wire.Parker.
func (s *tlsSource) Wake() {}

type parkedWait struct{}
