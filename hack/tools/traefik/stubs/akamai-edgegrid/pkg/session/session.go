// Package session declares what lego's edgedns DNS provider uses of Akamai's session package.
package session

import "github.com/akamai/AkamaiOPEN-edgegrid-golang/v13/pkg/edgegrid"

// Session is an EdgeGrid API session.
type Session interface{}

// Option configures New.
type Option func()

// New fails: EdgeGrid is not available in this build.
func New(...Option) (Session, error) { return nil, edgegrid.ErrUnavailable }

// WithSigner signs the session's requests with the given credentials.
func WithSigner(edgegrid.Signer) Option { return func() {} }
