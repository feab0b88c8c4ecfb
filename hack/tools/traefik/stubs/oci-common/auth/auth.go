// Package auth declares what lego's oraclecloud DNS provider uses of the OCI SDK's auth package.
package auth

import "github.com/nrdcg/oci-go-sdk/common/v1065"

// InstancePrincipalConfigurationProviderForRegion fails: the OCI SDK is not available in this build.
func InstancePrincipalConfigurationProviderForRegion(common.Region) (common.ConfigurationProvider, error) {
	return nil, common.ErrUnavailable
}
