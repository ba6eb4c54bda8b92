// The API docs at /docs: Swagger UI (vendored, see docs/dashboard.md) on this collector's
// OpenAPI document. A classic script, run after the bundle (both are deferred).
/* global SwaggerUIBundle */
window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
