// Package dns declares what lego's edgedns DNS provider uses of Akamai's Edge DNS client.
package dns

import (
	"context"

	"github.com/akamai/AkamaiOPEN-edgegrid-golang/v13/pkg/edgegrid"
	"github.com/akamai/AkamaiOPEN-edgegrid-golang/v13/pkg/session"
)

// Error is an Edge DNS API error.
type Error struct{ StatusCode int }

func (e *Error) Error() string { return edgegrid.ErrUnavailable.Error() }

// RecordBody is a DNS record set.
type RecordBody struct {
	Name       string
	RecordType string
	TTL        *int
	Active     bool
	Target     []string
}

// GetRecordRequest names a record set.
type GetRecordRequest struct{ Zone, Name, RecordType string }

// GetRecordResponse is a record set.
type GetRecordResponse struct {
	Name       string
	RecordType string
	TTL        int
	Active     bool
	Target     []string
}

// CreateRecordRequest creates a record set.
type CreateRecordRequest struct {
	Record  *RecordBody
	Zone    string
	RecLock []bool
}

// UpdateRecordRequest replaces a record set.
type UpdateRecordRequest struct {
	Record  *RecordBody
	Zone    string
	RecLock []bool
}

// DeleteRecordRequest deletes a record set.
type DeleteRecordRequest struct {
	Zone, Name, RecordType string
	RecLock                []bool
}

// DNS is the Edge DNS client.
type DNS interface {
	GetRecord(context.Context, GetRecordRequest) (*GetRecordResponse, error)
	CreateRecord(context.Context, CreateRecordRequest) error
	UpdateRecord(context.Context, UpdateRecordRequest) error
	DeleteRecord(context.Context, DeleteRecordRequest) error
}

type unavailable struct{}

func (unavailable) GetRecord(context.Context, GetRecordRequest) (*GetRecordResponse, error) {
	return nil, edgegrid.ErrUnavailable
}
func (unavailable) CreateRecord(context.Context, CreateRecordRequest) error {
	return edgegrid.ErrUnavailable
}
func (unavailable) UpdateRecord(context.Context, UpdateRecordRequest) error {
	return edgegrid.ErrUnavailable
}
func (unavailable) DeleteRecord(context.Context, DeleteRecordRequest) error {
	return edgegrid.ErrUnavailable
}

// Client returns a client whose every call fails.
func Client(session.Session) DNS { return unavailable{} }
