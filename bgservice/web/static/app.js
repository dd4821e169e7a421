// studio-background web page: talks to the service only through its public HTTP API.
// The API key comes from the URL fragment (#key=…, never sent to a server) or is pasted; kept in localStorage.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "bgservice.apiKey";
const POLL_MS = 700;

const state = {
  key: "",
  videoFile: null,
  videoAsset: null,
  videoUpload: null, // the upload's promise while it runs
  previewOk: false,
  objectUrl: null,
  imageAsset: null,
  imageUpload: null,
  bgVideoAsset: null,
  bgVideoUpload: null,
  job: null, // the job being followed / shown
  jobFromForm: false, // the job came from this page's form (so the original is the local file)
  offset: 0, // the trim start of the shown job: the original plays this much ahead
  pollTimer: null,
};

class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field || null;
  }
}

// ---------------------------------------------------------------------------------------------------
// The API

function parseAnswer(status, text, retryAfter) {
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (e) {
    data = null;
  }
  if (status >= 200 && status < 300) return data;
  const err = data && typeof data === "object" ? data.error : null;
  let message = err && err.message ? err.message : `The service answered HTTP ${status}.`;
  if (status === 429 && retryAfter) message += ` Try again in ${retryAfter} s.`;
  throw new ApiError(status, (err && err.code) || `http_${status}`, message, err && err.field);
}

function needKey() {
  if (!state.key) throw new ApiError(401, "unauthorized", "Paste your API key first (top of the page).", "key");
}

async function api(method, path, body, headers) {
  needKey();
  const h = Object.assign({ Authorization: `Bearer ${state.key}` }, headers || {});
  if (body !== undefined) h["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, "network", "The service cannot be reached.");
  }
  return parseAnswer(resp.status, await resp.text(), resp.headers.get("Retry-After"));
}

function uploadAsset(file, onProgress) {
  needKey();
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/assets");
    xhr.setRequestHeader("Authorization", `Bearer ${state.key}`);
    xhr.upload.addEventListener("progress", (ev) => {
      if (ev.lengthComputable) onProgress(ev.loaded / ev.total);
    });
    xhr.addEventListener("load", () => {
      try {
        resolve(parseAnswer(xhr.status, xhr.responseText, xhr.getResponseHeader("Retry-After")));
      } catch (e) {
        reject(e);
      }
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, "network", "The upload failed: the service cannot be reached.")));
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

function uuid4() {
  // crypto.randomUUID needs a secure context; getRandomValues does not
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// ---------------------------------------------------------------------------------------------------
// Errors next to the field at fault

const SLOTS = {
  // API field name -> [error element, input to mark]
  videoUrl: ["video-error", "video-file"],
  input_url: ["video-error", "video-file"],
  file: ["video-error", "video-file"],
  start: ["start-error", "start"],
  end: ["end-error", "end"],
  back_ground: ["colour-error", "colour-hex"],
  background: ["colour-error", "colour-hex"],
  imageUrl: ["image-error", "image-file"],
  backgroundVideoUrl: ["bg-video-error", "bg-video-file"],
  backgroundBlur: ["blur-error", "blur"],
  fit: ["fit-error", "fit"],
  outputFormat: ["format-error", "format"],
  quality: ["quality-error", "quality"],
};
const CODE_SLOTS = {
  invalid_background: "back_ground",
  invalid_background_image: "imageUrl",
  invalid_background_video: "backgroundVideoUrl",
  invalid_output: "outputFormat",
  invalid_trim: "start",
  invalid_input: "videoUrl",
  input_too_large: "videoUrl",
};

function clearErrors() {
  for (const el of document.querySelectorAll(".error")) el.textContent = "";
  for (const el of document.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
}

function showError(err, fallbackSlot) {
  if (!(err instanceof ApiError)) err = new ApiError(0, "internal", String(err && err.message ? err.message : err));
  if (err.field === "key" || err.code === "unauthorized") {
    $("key-state").textContent = err.message;
    $("key-state").className = "error";
    $("api-key").setAttribute("aria-invalid", "true");
    $("api-key").focus();
    return;
  }
  const field = err.field || CODE_SLOTS[err.code];
  const slot = SLOTS[field];
  const target = slot ? slot[0] : fallbackSlot || "form-error";
  $(target).textContent = err.message;
  if (slot) {
    const input = $(slot[1]);
    input.setAttribute("aria-invalid", "true");
    if (!input.classList.contains("visually-hidden")) input.focus();
  }
}

// ---------------------------------------------------------------------------------------------------
// The API key

function loadKey() {
  const m = location.hash.match(/(?:^#|&)key=([^&]+)/);
  if (m) {
    localStorage.setItem(KEY_STORE, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search); // keep the key out of the address bar
  }
  state.key = localStorage.getItem(KEY_STORE) || "";
  $("api-key").value = state.key;
  showKeyState();
}

function showKeyState() {
  $("key-state").className = "muted";
  $("key-state").textContent = state.key ? "saved in this browser" : "no key yet";
  $("api-key").removeAttribute("aria-invalid");
}

$("key-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  state.key = $("api-key").value.trim();
  if (state.key) localStorage.setItem(KEY_STORE, state.key);
  else localStorage.removeItem(KEY_STORE);
  showKeyState();
  refreshRecent();
});

// ---------------------------------------------------------------------------------------------------
// The video: pick or drop, upload with progress, preview

function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function pickVideo(file) {
  if (!file) return;
  clearErrors();
  state.videoFile = file;
  state.videoAsset = null;
  $("video-name").textContent = `${file.name} (${fmtBytes(file.size)})`;

  const preview = $("preview");
  if (state.objectUrl) URL.revokeObjectURL(state.objectUrl);
  state.objectUrl = URL.createObjectURL(file);
  $("preview-box").hidden = false;
  const playable = !file.type || preview.canPlayType(file.type) !== "";
  setPreview(playable);
  if (playable) preview.src = state.objectUrl;
  else preview.removeAttribute("src");

  $("upload-row").hidden = false;
  $("upload-progress").value = 0;
  $("upload-text").textContent = "uploading…";
  state.videoUpload = uploadAsset(file, (f) => {
    $("upload-progress").value = Math.round(f * 100);
    $("upload-text").textContent = `${Math.round(f * 100)} %`;
  })
    .then((asset) => {
      if (state.videoFile !== file) return null; // another file was picked meanwhile
      state.videoAsset = asset.asset_id;
      $("upload-progress").value = 100;
      $("upload-text").textContent = "uploaded";
      return asset.asset_id;
    })
    .catch((err) => {
      if (state.videoFile === file) {
        $("upload-text").textContent = "upload failed";
        showError(err, "video-error");
      }
      return null;
    });
}

function setPreview(ok) {
  state.previewOk = ok;
  $("preview").hidden = !ok;
  $("no-preview").hidden = ok;
}

$("preview").addEventListener("error", () => {
  if ($("preview").getAttribute("src")) setPreview(false);
});
$("video-file").addEventListener("change", (ev) => pickVideo(ev.target.files[0]));
const drop = $("drop");
for (const name of ["dragenter", "dragover"]) {
  drop.addEventListener(name, (ev) => {
    ev.preventDefault();
    drop.classList.add("over");
  });
}
for (const name of ["dragleave", "drop"]) drop.addEventListener(name, () => drop.classList.remove("over"));
drop.addEventListener("drop", (ev) => {
  ev.preventDefault();
  if (ev.dataTransfer && ev.dataTransfer.files.length) pickVideo(ev.dataTransfer.files[0]);
});

// ---------------------------------------------------------------------------------------------------
// Trim

function fmtTime(t) {
  return String(Math.round(t * 1000) / 1000);
}

function setFromPlayer(fieldId) {
  const p = $("preview");
  if (!state.previewOk || !p.getAttribute("src")) {
    showError(new ApiError(0, "no_preview", "No preview to take the time from: type it instead.", fieldId));
    return;
  }
  $(fieldId).value = fmtTime(p.currentTime);
  $(`${fieldId}-error`).textContent = "";
  $(fieldId).removeAttribute("aria-invalid");
}

$("start-now").addEventListener("click", () => setFromPlayer("start"));
$("end-now").addEventListener("click", () => setFromPlayer("end"));

function timeValue(text) {
  const t = text.trim();
  if (!t) return undefined;
  return /^\d+(\.\d+)?$/.test(t) ? Number(t) : t; // seconds as a number, else the API parses hh:mm:ss
}

function seconds(value) {
  if (typeof value === "number") return value;
  if (typeof value !== "string" || !value) return 0;
  return value.split(":").reduce((acc, part) => acc * 60 + Number(part), 0) || 0;
}

// ---------------------------------------------------------------------------------------------------
// Background

function bgMode() {
  return document.querySelector('input[name="bg"]:checked').value;
}

function showBgBoxes() {
  $("colour-box").hidden = bgMode() !== "colour";
  $("image-box").hidden = bgMode() !== "image";
  $("video-bg-box").hidden = bgMode() !== "video";
  $("blur-box").hidden = bgMode() !== "blur";
  $("fit-box").hidden = bgMode() !== "image" && bgMode() !== "video";
}

$("blur").addEventListener("input", (ev) => {
  $("blur-value").textContent = ev.target.value;
  ev.target.setAttribute("aria-valuetext", ev.target.value);
});

for (const r of document.querySelectorAll('input[name="bg"]')) r.addEventListener("change", showBgBoxes);
$("colour-picker").addEventListener("input", (ev) => {
  $("colour-hex").value = ev.target.value.toUpperCase();
  $("colour-error").textContent = "";
  $("colour-hex").removeAttribute("aria-invalid");
});
$("colour-hex").addEventListener("input", (ev) => {
  const v = ev.target.value.trim();
  if (/^#[0-9a-fA-F]{6}$/.test(v)) $("colour-picker").value = v.toLowerCase();
  else if (/^#[0-9a-fA-F]{3}$/.test(v)) $("colour-picker").value = `#${v[1]}${v[1]}${v[2]}${v[2]}${v[3]}${v[3]}`.toLowerCase();
});

// A background file (image or video) is uploaded as soon as it is chosen: kind -> its elements and state.
function backgroundUpload(input, errorId, progressId, assetKey, uploadKey) {
  $(input).addEventListener("change", (ev) => {
    const file = ev.target.files[0];
    state[assetKey] = null;
    state[uploadKey] = null;
    $(errorId).textContent = "";
    $(input).removeAttribute("aria-invalid");
    if (!file) return;
    const bar = $(progressId);
    bar.hidden = false;
    bar.value = 0;
    state[uploadKey] = uploadAsset(file, (f) => (bar.value = Math.round(f * 100)))
      .then((asset) => {
        state[assetKey] = asset.asset_id;
        bar.value = 100;
        return asset.asset_id;
      })
      .catch((err) => {
        showError(err, errorId);
        if (!err.field) $(errorId).textContent = err.message;
        return null;
      });
  });
}
backgroundUpload("image-file", "image-error", "image-progress", "imageAsset", "imageUpload");
backgroundUpload("bg-video-file", "bg-video-error", "bg-video-progress", "bgVideoAsset", "bgVideoUpload");

// ---------------------------------------------------------------------------------------------------
// Submit and follow

$("job-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  clearErrors();
  const button = $("submit");
  button.disabled = true;
  try {
    if (!state.videoFile) throw new ApiError(0, "invalid_request", "Pick or drop a video first.", "videoUrl");
    const video = state.videoAsset || (await state.videoUpload);
    if (!video) throw new ApiError(0, "invalid_input", $("video-error").textContent || "The upload failed.", "videoUrl");
    const body = { videoUrl: video };
    const start = timeValue($("start").value);
    const end = timeValue($("end").value);
    if (start !== undefined) body.start = start;
    if (end !== undefined) body.end = end;
    if (bgMode() === "colour") body.back_ground = $("colour-hex").value.trim();
    if (bgMode() === "image") {
      const image = state.imageAsset || (state.imageUpload && (await state.imageUpload));
      if (!image) throw new ApiError(0, "invalid_background_image", "Choose an image first.", "imageUrl");
      body.imageUrl = image;
    }
    if (bgMode() === "video") {
      const bgVideo = state.bgVideoAsset || (state.bgVideoUpload && (await state.bgVideoUpload));
      if (!bgVideo) throw new ApiError(0, "invalid_background_video", "Choose a background video first.", "backgroundVideoUrl");
      body.backgroundVideoUrl = bgVideo;
    }
    if (bgMode() === "blur") body.backgroundBlur = Number($("blur").value);
    if (bgMode() === "image" || bgMode() === "video") body.fit = $("fit").value;
    if ($("format").value !== "mp4") body.outputFormat = $("format").value;
    if ($("quality").value) body.quality = $("quality").value;
    const answer = await api("POST", "/v1/proxy/studio-background", body, { "Idempotency-Key": uuid4() });
    const job = answer.job || answer;
    state.jobFromForm = true;
    state.offset = seconds(start);
    follow(job.id, job);
    refreshRecent();
  } catch (err) {
    showError(err);
  } finally {
    button.disabled = false;
  }
});

function follow(jobId, first) {
  clearTimeout(state.pollTimer);
  state.job = first || { id: jobId, status: "queued", progress: 0 };
  $("result-box").hidden = true;
  $("job-box").hidden = false;
  $("job-id").textContent = jobId;
  $("job-error").textContent = "";
  renderJob(state.job);
  const tick = async () => {
    if (!state.job || state.job.id !== jobId) return;
    try {
      const job = await api("GET", `/v2/jobs/${encodeURIComponent(jobId)}`);
      if (!state.job || state.job.id !== jobId) return;
      state.job = job;
      renderJob(job);
      if (job.status === "completed" || job.status === "failed" || job.status === "cancelled") {
        refreshRecent();
        return;
      }
    } catch (err) {
      $("job-error").textContent = err.message;
    }
    state.pollTimer = setTimeout(tick, POLL_MS);
  };
  state.pollTimer = setTimeout(tick, first && first.created_at ? 0 : POLL_MS);
}

function renderJob(job) {
  const pct = Math.round((job.progress || 0) * 100);
  $("job-progress").value = job.status === "completed" ? 100 : pct;
  $("job-status").textContent = job.status === "running" ? `running, ${pct} %` : job.status;
  $("cancel").hidden = !(job.status === "queued" || job.status === "running");
  if (job.status === "failed" && job.error) {
    const err = new ApiError(0, job.error.code, `The job failed: ${job.error.message} (${job.error.code})`, job.error.field);
    $("job-error").textContent = err.message;
    if (state.jobFromForm && (err.field || CODE_SLOTS[err.code])) showError(err, "job-error");
  }
  if (job.status === "completed") showResult(job);
}

$("cancel").addEventListener("click", async () => {
  if (!state.job) return;
  try {
    const job = await api("DELETE", `/v2/jobs/${encodeURIComponent(state.job.id)}`);
    state.job = job;
    renderJob(job);
  } catch (err) {
    $("job-error").textContent = err.message;
  }
});

// ---------------------------------------------------------------------------------------------------
// The result: original and result side by side, playing together

function extensionOf(data) {
  const m = /\.[a-z0-9]+$/i.exec((data && data.key) || "");
  return m ? m[0] : ".mp4";
}

function transparent(job) {
  const fmt = (job.result_data && job.result_data.output_format) || (job.request && job.request.outputFormat);
  const req = job.request || {};
  const background = req.back_ground || req.imageUrl || req.backgroundVideoUrl || req.backgroundBlur;
  return (fmt === "webm" || fmt === "mov") && !background;
}

function showResult(job) {
  const data = job.result_data;
  $("result-box").hidden = false;
  const result = $("result");
  const original = $("original");
  if (!data || !data.url) {
    result.removeAttribute("src");
    $("download").removeAttribute("href");
    $("result-info").textContent = "The result has expired.";
    return;
  }
  if (result.dataset.job !== job.id) {
    result.dataset.job = job.id;
    result.src = data.url;
  }
  // a transparent result plays over a checkerboard, so its alpha is visible
  result.classList.toggle("checker", transparent(job));
  $("download").href = data.url;
  $("download").setAttribute("download", `${job.id}${extensionOf(data)}`);
  $("download").textContent = `Download ${extensionOf(data).slice(1).toUpperCase()}`;
  const usage = data.usage || {};
  $("result-info").textContent = `${Number(data.duration_seconds).toFixed(2)} s, billed ${usage.billed_seconds} s ($${usage.amount_usd})`;
  const haveOriginal = state.jobFromForm && state.previewOk && state.objectUrl;
  original.hidden = !haveOriginal;
  $("original-missing").hidden = !!haveOriginal;
  if (haveOriginal) {
    if (original.src !== state.objectUrl) original.src = state.objectUrl;
    original.currentTime = state.offset;
  } else {
    original.removeAttribute("src");
  }
}

function originalReady() {
  return !$("original").hidden && $("original").getAttribute("src");
}

function syncOriginal() {
  if (!originalReady()) return;
  const want = $("result").currentTime + state.offset;
  if (Math.abs($("original").currentTime - want) > 0.15) $("original").currentTime = want;
}

$("result").addEventListener("play", () => {
  if (!originalReady()) return;
  syncOriginal();
  $("original").play().catch(() => {});
});
$("result").addEventListener("pause", () => {
  if (originalReady()) $("original").pause();
});
$("result").addEventListener("seeked", syncOriginal);
$("result").addEventListener("timeupdate", syncOriginal);
$("result").addEventListener("ratechange", () => {
  $("original").playbackRate = $("result").playbackRate;
});
$("result").addEventListener("ended", () => {
  if (originalReady()) $("original").pause();
});
$("play-both").addEventListener("click", () => {
  const r = $("result");
  if (r.paused) r.play().catch(() => {});
  else r.pause();
});
$("result").addEventListener("play", () => ($("play-both").textContent = "Pause both"));
$("result").addEventListener("pause", () => ($("play-both").textContent = "Play both"));

// ---------------------------------------------------------------------------------------------------
// Recent jobs

async function refreshRecent() {
  $("recent-error").textContent = "";
  if (!state.key) {
    $("recent").replaceChildren();
    return;
  }
  let page;
  try {
    page = await api("GET", "/v2/jobs?limit=10");
  } catch (err) {
    $("recent-error").textContent = err.message;
    return;
  }
  const items = page.jobs.map((job) => {
    const li = document.createElement("li");
    const badge = document.createElement("span");
    badge.className = `status ${job.status}`;
    badge.textContent = job.status === "running" ? `running ${Math.round(job.progress * 100)} %` : job.status;
    const id = document.createElement("code");
    id.textContent = job.id.slice(0, 8);
    id.title = job.id;
    const when = document.createElement("span");
    when.className = "muted small";
    when.textContent = new Date(job.created_at).toLocaleString();
    li.append(badge, id, when);
    if (job.error) {
      const e = document.createElement("span");
      e.className = "small";
      e.textContent = `${job.error.code}: ${job.error.message}`;
      li.append(e);
    }
    const open = document.createElement("button");
    open.type = "button";
    open.className = "small";
    open.textContent = "Open";
    open.setAttribute("aria-label", `Open job ${job.id}`);
    open.addEventListener("click", () => {
      state.jobFromForm = false;
      state.offset = 0;
      follow(job.id, job);
    });
    li.append(open);
    if (job.result_data && job.result_data.url) {
      const a = document.createElement("a");
      a.href = job.result_data.url;
      a.textContent = "Download";
      a.setAttribute("download", `${job.id}${extensionOf(job.result_data)}`);
      a.setAttribute("aria-label", `Download the result of job ${job.id}`);
      li.append(a);
    }
    return li;
  });
  if (!items.length) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = "No jobs yet.";
    items.push(li);
  }
  $("recent").replaceChildren(...items);
}
$("refresh").addEventListener("click", refreshRecent);

loadKey();
showBgBoxes();
refreshRecent();
