// Package edgegrid declares what lego's edgedns DNS provider uses of Akamai's EdgeGrid client, which
// the Go module proxy does not serve; the sandbox's Traefik never calls it.
package edgegrid

import (
	"errors"
	"net/http"
)

// ErrUnavailable is what every constructor of this stand-in returns.
var ErrUnavailable = errors.New("akamai edgegrid is not compiled into this traefik build")

// Config holds an EdgeGrid client's credentials.
type Config struct {
	Host         string
	ClientToken  string
	ClientSecret string
	AccessToken  string
	AccountKey   string
	MaxBody      int
}

// Option configures New.
type Option func(*Config)

// New fails: EdgeGrid is not available in this build.
func New(...Option) (*Config, error) { return nil, ErrUnavailable }

// WithEnv reads the credentials from the environment.
func WithEnv(bool) Option { return func(*Config) {} }

// WithFile reads the credentials from an .edgerc file.
func WithFile(string) Option { return func(*Config) {} }

// WithSection names the .edgerc section.
func WithSection(string) Option { return func(*Config) {} }

// Validate fails: EdgeGrid is not available in this build.
func (c *Config) Validate() error { return ErrUnavailable }

// Signer signs a session's requests.
type Signer interface {
	SignRequest(*http.Request)
}

// SignRequest signs nothing: no request is ever sent.
func (c *Config) SignRequest(*http.Request) {}
