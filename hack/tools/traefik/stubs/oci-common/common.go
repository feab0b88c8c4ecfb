// Package common declares what lego's oraclecloud DNS provider uses of the OCI SDK's common package,
// which the Go module proxy does not serve; the sandbox's Traefik never calls it.
package common

import (
	"crypto/rsa"
	"errors"
)

// ErrUnavailable is what every function of this stand-in returns.
var ErrUnavailable = errors.New("the OCI SDK is not compiled into this traefik build")

// AuthenticationType names how a configuration provider authenticates.
type AuthenticationType string

// The authentication types lego reads from its environment.
const (
	UserPrincipal             AuthenticationType = "user_principal"
	InstancePrincipal         AuthenticationType = "instance_principal"
	UnknownAuthenticationType AuthenticationType = "unknown_auth_type"
)

// AuthConfig is a configuration provider's authentication.
type AuthConfig struct {
	AuthType AuthenticationType
}

// Region is an OCI region.
type Region string

// ConfigurationProvider supplies OCI credentials.
type ConfigurationProvider interface {
	KeyID() (string, error)
	PrivateRSAKey() (*rsa.PrivateKey, error)
	TenancyOCID() (string, error)
	UserOCID() (string, error)
	KeyFingerprint() (string, error)
	Region() (string, error)
	AuthType() (AuthConfig, error)
}

// PrivateKeyFromBytesWithPassword fails: the OCI SDK is not available in this build.
func PrivateKeyFromBytesWithPassword([]byte, []byte) (*rsa.PrivateKey, error) {
	return nil, ErrUnavailable
}

type unavailable struct{}

func (unavailable) KeyID() (string, error)                  { return "", ErrUnavailable }
func (unavailable) PrivateRSAKey() (*rsa.PrivateKey, error) { return nil, ErrUnavailable }
func (unavailable) TenancyOCID() (string, error)            { return "", ErrUnavailable }
func (unavailable) UserOCID() (string, error)               { return "", ErrUnavailable }
func (unavailable) KeyFingerprint() (string, error)         { return "", ErrUnavailable }
func (unavailable) Region() (string, error)                 { return "", ErrUnavailable }
func (unavailable) AuthType() (AuthConfig, error)           { return AuthConfig{}, ErrUnavailable }

// CustomProfileSessionTokenConfigProvider returns a provider whose every method fails.
func CustomProfileSessionTokenConfigProvider(string, string) ConfigurationProvider {
	return unavailable{}
}
