// ownstream console: live progress of runs and imports (server-sent events) and an upload's
// progress. Every page works without this file; it only shows what is happening sooner.
(function () {
  "use strict";
  var importing = null; // the events of the import being uploaded, if any

  function describe(data) {
    var parts = [];
    if (data.message) parts.push(data.message);
    if (typeof data.records === "number") parts.push(data.records + " records");
    return parts.join(" · ");
  }

  // Follow a run or an import: `progress` events update the bar, `finished` ends the stream.
  function follow(box, url, onFinished) {
    var text = box.querySelector(".progress-text");
    var bar = box.querySelector("progress:not(.upload-bar)") || box.querySelector("progress");
    var source = new EventSource(url);
    source.addEventListener("progress", function (e) {
      var data = JSON.parse(e.data);
      if (text) text.textContent = describe(data) || "Working…";
      if (bar && typeof data.total === "number" && data.total > 0) {
        bar.max = data.total;
        bar.value = data.count || 0;
      }
    });
    source.addEventListener("finished", function (e) {
      source.close();
      onFinished(JSON.parse(e.data));
    });
    return source;
  }

  function startLive(root) {
    root.querySelectorAll("[data-events]").forEach(function (box) {
      if (box.dataset.following) return;
      box.dataset.following = "1";
      follow(box, box.dataset.events, function () {
        if (box.dataset.reload) window.location.reload();
      });
    });
    var form = root.querySelector ? root.querySelector("#import-form") : null;
    if (form) {
      var id = form.querySelector('input[name="progress_id"]');
      var bytes = new Uint8Array(16);
      window.crypto.getRandomValues(bytes);
      id.value = Array.from(bytes, function (b) { return b.toString(16).padStart(2, "0"); }).join("");
    }
  }

  // An upload sent by htmx: its bytes, then the import's progress while the receipt is made.
  document.addEventListener("htmx:beforeSend", function (e) {
    var form = e.detail.elt;
    if (!form || form.id !== "import-form") return;
    var box = form.querySelector(".upload-progress");
    var bar = box.querySelector(".upload-bar");
    var text = box.querySelector(".progress-text");
    var id = form.querySelector('input[name="progress_id"]').value;
    box.hidden = false;
    form.querySelector('button[type="submit"]').disabled = true;
    var upload = e.detail.xhr.upload;
    upload.addEventListener("progress", function (p) {
      if (p.lengthComputable) {
        bar.max = p.total;
        bar.value = p.loaded;
        text.textContent = "Uploading: " + Math.round(100 * p.loaded / p.total) + "%";
      }
    });
    upload.addEventListener("load", function () {
      text.textContent = "Uploaded. Importing…";
      importing = follow(box, "/console/imports/" + id + "/events", function (done) {
        text.textContent = done.status === "failed" ? "The import failed." : "Imported.";
      });
    });
  });

  // The answer (the receipt, or the form with what went wrong) ends the import's events.
  document.addEventListener("htmx:afterRequest", function (e) {
    if (importing && e.detail.elt && e.detail.elt.id === "import-form") {
      importing.close();
      importing = null;
    }
  });

  if (window.htmx) {
    window.htmx.onLoad(startLive);
  } else {
    document.addEventListener("DOMContentLoaded", function () { startLive(document); });
  }
})();
