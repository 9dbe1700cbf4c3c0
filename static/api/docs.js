// Starts the vendored Swagger UI on /api/v1/docs. The page carries the schema's
// address and the CSRF token as data attributes, so no script is inline.
(function () {
  const data = document.body.dataset;
  window.SwaggerUIBundle({
    url: data.openapiUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [window.SwaggerUIBundle.presets.apis],
    requestInterceptor: function (req) {
      if (data.csrfToken) {
        req.headers["X-CSRFToken"] = data.csrfToken;
      }
      return req;
    },
  });
})();
