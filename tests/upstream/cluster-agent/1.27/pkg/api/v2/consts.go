package v2

const (
	// CAPIAuthTokenHeader is the header used to pass the CAPI auth token.
	CAPIAuthTokenHeader = "capi-auth-token"
)
