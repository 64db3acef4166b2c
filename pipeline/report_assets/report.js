/* dpt-batch report: the table of videos (sort, filter, page; its state in the URL hash, so that a link
   such as index.html#status=failed opens it filtered) and, with ?selftest in the URL, a self-check that
   the tests read back (every picture loaded; the rows the hash's filter leaves). No library. */
"use strict";

(function () {
  const config = window.DPT_REPORT;
  const table = document.getElementById("videos");
  const videos = config && table ? videosTable(config, window.DPT_ROWS || [], table) : null;
  if (new URLSearchParams(window.location.search).has("selftest")) {
    selfTest(videos);
  }

  function videosTable(config, rows, table) {
    const columns = config.columns;
    const byHash = {};
    columns.forEach(function (column, index) {
      column.cell = index + 1; // row[0] is the video's page name
      byHash[column.hash] = column;
    });
    const state = { filters: {}, search: "", sort: null, descending: false, page: 1 };
    const filters = document.getElementById("filters");
    const selects = {};
    const search = element("input", { type: "search", placeholder: "video id, error, text …", size: 28 });
    filters.appendChild(labelled("search", search));
    columns.forEach(function (column) {
      if (!column.pick) return;
      const select = element("select", {});
      select.appendChild(element("option", { value: "" }, "all"));
      distinctValues(column).forEach(function (value) {
        select.appendChild(element("option", { value: value }, value === "" ? "(empty)" : value));
      });
      select.addEventListener("change", function () {
        if (select.value === "" && select.selectedIndex === 0) delete state.filters[column.hash];
        else state.filters[column.hash] = select.value;
        state.page = 1;
        update();
      });
      selects[column.hash] = select;
      filters.appendChild(labelled(column.label, select));
    });
    let typing = null;
    search.addEventListener("input", function () {
      clearTimeout(typing);
      typing = setTimeout(function () {
        state.search = search.value.trim();
        state.page = 1;
        update();
      }, 150);
    });

    const head = element("tr", {});
    columns.forEach(function (column) {
      const button = element("button", { type: "button", title: "sort by " + column.label }, column.label);
      button.addEventListener("click", function () {
        if (state.sort === column.key) state.descending = !state.descending;
        else {
          state.sort = column.key;
          state.descending = column.kind === "number";
        }
        state.page = 1;
        update();
      });
      const th = element("th", { className: column.kind === "number" ? "num" : "" });
      th.appendChild(button);
      column.header = th;
      head.appendChild(th);
    });
    table.tHead.appendChild(head);

    window.addEventListener("hashchange", function () {
      if (readHash()) render();
    });
    readHash();
    render();
    return { matching: matching, rows: rows };

    /* The table's state from the hash; false (state kept) for a plain anchor such as #failures. */
    function readHash() {
      const hash = window.location.hash.slice(1);
      if (hash && hash.indexOf("=") < 0) return false;
      const params = new URLSearchParams(hash);
      state.filters = {};
      state.search = params.get("search") || "";
      const sort = params.get("sort") || "";
      state.descending = sort.startsWith("-");
      state.sort = sort.replace(/^-/, "") || null;
      state.page = Math.max(1, parseInt(params.get("page") || "1", 10) || 1);
      params.forEach(function (value, key) {
        if (byHash[key]) state.filters[key] = value;
      });
      search.value = state.search;
      Object.keys(selects).forEach(function (key) {
        selects[key].value = key in state.filters ? state.filters[key] : "";
      });
      return true;
    }

    function writeHash() {
      const params = new URLSearchParams();
      Object.keys(state.filters).forEach(function (key) {
        params.set(key, state.filters[key]);
      });
      if (state.search) params.set("search", state.search);
      if (state.sort) params.set("sort", (state.descending ? "-" : "") + state.sort);
      if (state.page > 1) params.set("page", String(state.page));
      const hash = "#" + params.toString().replace(/\+/g, "%20");
      try {
        window.history.replaceState(null, "", hash);
      } catch (error) {
        window.location.hash = hash; // a hashchange follows and renders again: harmless
      }
    }

    /* The column's values as the table shows and compares them (text), in order. */
    function distinctValues(column) {
      const seen = {};
      rows.forEach(function (row) {
        seen[text(row[column.cell])] = row[column.cell];
      });
      return Object.keys(seen).sort(function (a, b) {
        if (column.kind === "number" && a !== "" && b !== "") return seen[a] - seen[b];
        return a.localeCompare(b, undefined, { numeric: true });
      });
    }

    function update() {
      writeHash();
      render();
    }

    function text(value) {
      return value === null || value === undefined ? "" : String(value);
    }

    function matching() {
      const wanted = Object.keys(state.filters).map(function (key) {
        return [byHash[key].cell, state.filters[key]];
      });
      const needle = state.search.toLowerCase();
      const searched = columns.filter(function (column) {
        return column.kind !== "number";
      });
      let found = rows.filter(function (row) {
        for (let i = 0; i < wanted.length; i++) {
          if (text(row[wanted[i][0]]) !== wanted[i][1]) return false;
        }
        if (!needle) return true;
        return searched.some(function (column) {
          return text(row[column.cell]).toLowerCase().includes(needle);
        });
      });
      const column = columns.find(function (candidate) {
        return candidate.key === state.sort;
      });
      if (column) {
        const sign = state.descending ? -1 : 1;
        const numeric = column.kind === "number";
        found = found
          .map(function (row, index) {
            return [row, index];
          })
          .sort(function (a, b) {
            const x = a[0][column.cell];
            const y = b[0][column.cell];
            const missingX = x === null || x === undefined || x === "";
            const missingY = y === null || y === undefined || y === "";
            if (missingX || missingY) return missingX === missingY ? a[1] - b[1] : missingX ? 1 : -1;
            const order = numeric ? x - y : String(x).localeCompare(String(y), undefined, { numeric: true });
            return order ? sign * order : a[1] - b[1];
          })
          .map(function (pair) {
            return pair[0];
          });
      }
      return found;
    }

    function render() {
      const found = matching();
      const pageRows = config.pageRows;
      const pages = Math.max(1, Math.ceil(found.length / pageRows));
      state.page = Math.min(state.page, pages);
      const first = (state.page - 1) * pageRows;
      const shown = found.slice(first, first + pageRows);
      const body = element("tbody", {});
      shown.forEach(function (row) {
        const tr = element("tr", {});
        columns.forEach(function (column) {
          const value = row[column.cell];
          const td = element("td", { className: column.kind === "number" ? "num" : column.kind });
          if (column.kind === "id") {
            td.appendChild(element("a", { href: "videos/" + encodeURIComponent(row[0]) + ".html" }, text(value)));
          } else if (column.kind === "number") {
            td.textContent = value === null || value === undefined ? "–" : formatNumber(value);
          } else {
            td.textContent = text(value);
            if (column.kind === "status") td.className = "status-cell " + text(value);
            if (column.kind === "text" || column.kind === "error") td.title = text(value);
          }
          if (column.key === "error") td.className = "error";
          tr.appendChild(td);
        });
        body.appendChild(tr);
      });
      table.replaceChild(body, table.tBodies[0]);
      columns.forEach(function (column) {
        const sorted = state.sort === column.key;
        column.header.setAttribute("aria-sort", sorted ? (state.descending ? "descending" : "ascending") : "none");
        column.header.firstChild.textContent = column.label + (sorted ? (state.descending ? " ▼" : " ▲") : "");
      });
      ["pager-top", "pager"].forEach(function (id) {
        pager(document.getElementById(id), found.length, first, shown.length, pages);
      });
    }

    function pager(box, total, first, count, pages) {
      box.textContent = "";
      const previous = element("button", { type: "button", disabled: state.page <= 1 }, "← previous");
      const next = element("button", { type: "button", disabled: state.page >= pages }, "next →");
      previous.addEventListener("click", function () {
        state.page -= 1;
        update();
      });
      next.addEventListener("click", function () {
        state.page += 1;
        update();
      });
      const what = total
        ? "videos " + (first + 1).toLocaleString() + "–" + (first + count).toLocaleString() + " of " +
          total.toLocaleString() + (total < rows.length ? " matching (" + rows.length.toLocaleString() + " in all)" : "") +
          " · page " + state.page + " of " + pages
        : "no video matches";
      box.appendChild(previous);
      box.appendChild(element("span", {}, what));
      box.appendChild(next);
    }
  }

  function formatNumber(value) {
    return Number(value).toLocaleString(undefined, { maximumFractionDigits: 2 });
  }

  function element(tag, properties, content) {
    const node = document.createElement(tag);
    Object.keys(properties).forEach(function (name) {
      node[name] = properties[name];
    });
    if (content !== undefined) node.textContent = content;
    return node;
  }

  function labelled(label, control) {
    const wrapper = element("label", {});
    wrapper.appendChild(document.createTextNode(label));
    wrapper.appendChild(control);
    return wrapper;
  }

  /* Waits for every picture (lazy ones too), then writes <pre id="selftest"> as JSON: images and the
     broken ones (not complete, or naturalWidth 0), and on the index the rows the hash's filter leaves. */
  function selfTest(videos) {
    const images = Array.prototype.slice.call(document.images);
    const loads = images.map(function (image) {
      image.loading = "eager";
      if (image.complete) return Promise.resolve();
      return new Promise(function (resolve) {
        image.addEventListener("load", resolve);
        image.addEventListener("error", resolve);
      });
    });
    Promise.all(loads).then(function () {
      const result = {
        images: images.length,
        broken: images
          .filter(function (image) {
            return !(image.complete && image.naturalWidth > 0);
          })
          .map(function (image) {
            return image.getAttribute("src");
          }),
        sizes: images.map(function (image) {
          return [image.naturalWidth, image.naturalHeight];
        }),
      };
      if (videos) {
        const found = videos.matching();
        result.rows_loaded = videos.rows.length;
        result.matching = found.map(function (row) {
          return row[1];
        });
        result.shown = Array.prototype.map.call(document.querySelectorAll("#videos tbody tr"), function (tr) {
          return tr.cells[0].textContent;
        });
      }
      const out = document.createElement("pre");
      out.id = "selftest";
      out.textContent = JSON.stringify(result);
      document.body.appendChild(out);
    });
  }
})();
