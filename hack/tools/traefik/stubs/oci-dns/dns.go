// Package dns declares what lego's oraclecloud DNS provider uses of the OCI SDK's DNS client.
package dns

import (
	"context"
	"net/http"

	"github.com/nrdcg/oci-go-sdk/common/v1065"
)

// RecordOperationOperationEnum is what a record operation does.
type RecordOperationOperationEnum string

// RecordOperationOperationRemove removes a record.
const RecordOperationOperationRemove RecordOperationOperationEnum = "REMOVE"

// RecordOperation adds or removes a record.
type RecordOperation struct {
	Domain      *string
	RecordHash  *string
	IsProtected *bool
	Rdata       *string
	Rtype       *string
	Ttl         *int
	Operation   RecordOperationOperationEnum
}

// PatchDomainRecordsDetails lists record operations.
type PatchDomainRecordsDetails struct{ Items []RecordOperation }

// PatchDomainRecordsRequest patches a domain's records.
type PatchDomainRecordsRequest struct {
	ZoneNameOrId              *string
	Domain                    *string
	PatchDomainRecordsDetails PatchDomainRecordsDetails
	CompartmentId             *string
}

// PatchDomainRecordsResponse answers PatchDomainRecordsRequest.
type PatchDomainRecordsResponse struct{}

// Record is a DNS record.
type Record struct {
	Rdata      *string
	RecordHash *string
}

// GetDomainRecordsRequest lists a domain's records.
type GetDomainRecordsRequest struct {
	ZoneNameOrId  *string
	Domain        *string
	CompartmentId *string
	Rtype         *string
}

// GetDomainRecordsResponse answers GetDomainRecordsRequest.
type GetDomainRecordsResponse struct {
	Items         []Record
	OpcTotalItems *int
}

// HTTPRequestDispatcher sends the client's requests.
type HTTPRequestDispatcher interface {
	Do(*http.Request) (*http.Response, error)
}

// DnsClient is the OCI DNS client; every call fails.
type DnsClient struct{ HTTPClient HTTPRequestDispatcher }

// NewDnsClientWithConfigurationProvider fails: the OCI SDK is not available in this build.
func NewDnsClientWithConfigurationProvider(common.ConfigurationProvider) (DnsClient, error) {
	return DnsClient{}, common.ErrUnavailable
}

// PatchDomainRecords fails.
func (DnsClient) PatchDomainRecords(context.Context, PatchDomainRecordsRequest) (PatchDomainRecordsResponse, error) {
	return PatchDomainRecordsResponse{}, common.ErrUnavailable
}

// GetDomainRecords fails.
func (DnsClient) GetDomainRecords(context.Context, GetDomainRecordsRequest) (GetDomainRecordsResponse, error) {
	return GetDomainRecordsResponse{}, common.ErrUnavailable
}
