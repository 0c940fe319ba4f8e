package httpapi

import (
	"net/http"
	"reflect"

	"github.com/labstack/echo/v4"

	"github.com/ragfence/ragfence/retriever/internal/strictjson"
	"github.com/ragfence/ragfence/retriever/service"
)

var approvalRequestSchema = strictjson.ForType(reflect.TypeFor[service.ApprovalRequest]())

func (s *Server) caller(c echo.Context) service.Caller {
	return service.Caller{Authorization: c.Request().Header.Get(echo.HeaderAuthorization), ClientAddr: clientIP(c), Channel: Channel}
}

// requestApproval is POST /v1/approvals: an agent asks for its user's
// approval of one of its approval rules; 201 with the pending request. The
// token is checked before the body is read.
func (s *Server) requestApproval(c echo.Context) error {
	v, err := s.svc.RequestApproval(c.Request().Context(), s.caller(c), func() (service.ApprovalRequest, error) {
		var req service.ApprovalRequest
		return req, s.readJSON(c, &req, approvalRequestSchema)
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, v)
}

// listApprovals is GET /v1/approvals: the caller's requests and approvals.
func (s *Server) listApprovals(c echo.Context) error {
	list, err := s.svc.Approvals(c.Request().Context(), s.caller(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"approvals": list})
}

// decideApproval is POST /v1/approvals/{id}/approve and /deny: the user
// decides one of their pending requests.
func (s *Server) decideApproval(approve bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		v, err := s.svc.DecideApproval(c.Request().Context(), s.caller(c), c.Param("id"), approve)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, v)
	}
}

// access is GET /v1/access[?agent=ID]: what the caller, or the agent acting
// for them, may read, and why.
func (s *Server) access(c echo.Context) error {
	a, err := s.svc.Access(c.Request().Context(), s.caller(c), c.QueryParam("agent"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, a)
}
