// Forms generated from declared inputs (a workflow's) or a JSON Schema (a wait node's answer):
// one labelled field per input, its type choosing the control, its default filled in, its
// description as the field's hint.

import { h } from "./dom.js";

let serial = 0;

/** Fields from a JSON Schema of an object (its `properties` and `required`). */
export function fieldsFromSchema(schema) {
  if (!schema || schema.type !== "object" || !schema.properties) return null;
  const required = new Set(schema.required || []);
  return Object.entries(schema.properties).map(([name, p]) => ({
    name,
    type: Array.isArray(p.type) ? p.type[0] : p.type || "any",
    required: required.has(name),
    default: p.default,
    description: p.description,
    enum: p.enum,
  }));
}

function control(f, id, hintId) {
  const common = { id, name: f.name, "aria-describedby": hintId, "data-type": f.type };
  if (f.enum) {
    return h("select", common, f.enum.map((v) => h("option", { value: JSON.stringify(v), selected: JSON.stringify(v) === JSON.stringify(f.default) }, String(v))));
  }
  switch (f.type) {
    case "boolean":
      return h("input", { ...common, type: "checkbox", checked: f.default === true });
    case "integer":
    case "number":
      return h("input", { ...common, type: "number", step: f.type === "integer" ? "1" : "any", value: f.default ?? "", required: f.required });
    case "string":
      return h("input", { ...common, type: "text", value: f.default ?? "", required: f.required, size: 40 });
    default:
      return h("textarea", { ...common, rows: 3, cols: 40, spellcheck: "false", required: f.required },
        f.default === undefined ? "" : JSON.stringify(f.default, null, 2));
  }
}

/**
 * A form of `fields` ([{name, type, required, default, description}]). `onSubmit(values)` is
 * called with the values, typed; it may return problems `[{input, message}]` to show by field.
 */
export function inputsForm(fields, { submit, onSubmit, formLabel }) {
  const form = h("form", { class: "inputs", "aria-label": formLabel, novalidate: true });
  const errors = new Map();
  for (const f of fields) {
    const id = `f${++serial}-${f.name}`;
    const hintId = `${id}-hint`;
    const errId = `${id}-err`;
    const input = control(f, id, `${hintId} ${errId}`);
    const err = h("span", { id: errId, class: "field-error", role: "status" });
    errors.set(f.name, { err, input });
    const hint = [f.type, f.required ? "required" : f.default !== undefined ? `default ${JSON.stringify(f.default)}` : "optional", f.description]
      .filter(Boolean).join(" · ");
    form.append(h("div", { class: `field ${f.type === "boolean" ? "check" : ""}` },
      h("label", { for: id }, f.name, f.required ? h("span", { class: "req", "aria-hidden": "true" }, " *") : null),
      input,
      h("span", { id: hintId, class: "hint" }, hint),
      err));
  }
  const status = h("p", { class: "form-status", role: "status" });
  form.append(h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, submit)), status);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const values = {};
    let bad = false;
    for (const f of fields) {
      const { err, input } = errors.get(f.name);
      err.textContent = "";
      input.removeAttribute("aria-invalid");
      const raw = input.type === "checkbox" ? input.checked : input.value;
      try {
        if (input.tagName === "SELECT") values[f.name] = JSON.parse(raw);
        else if (f.type === "boolean") values[f.name] = raw;
        else if (f.type === "integer" || f.type === "number") {
          if (raw === "") {
            if (f.required) throw new Error("a number is required");
            continue;
          }
          const n = Number(raw);
          if (!Number.isFinite(n) || (f.type === "integer" && !Number.isInteger(n))) throw new Error(`not ${f.type === "integer" ? "an integer" : "a number"}`);
          values[f.name] = n;
        } else if (f.type === "string") {
          if (raw === "" && f.required) throw new Error("a value is required");
          if (raw === "" && f.default === undefined) continue;
          values[f.name] = raw;
        } else {
          if (raw.trim() === "") {
            if (f.required) throw new Error("a JSON value is required");
            continue;
          }
          values[f.name] = JSON.parse(raw);
        }
      } catch (e) {
        bad = true;
        err.textContent = e instanceof SyntaxError ? "not valid JSON" : e.message;
        input.setAttribute("aria-invalid", "true");
      }
    }
    if (bad) {
      status.textContent = "Some fields need fixing.";
      form.querySelector("[aria-invalid=true]")?.focus();
      return;
    }
    status.textContent = "Sending…";
    const problems = (await onSubmit(values)) || [];
    status.textContent = problems.length ? "The service refused it:" : "";
    for (const p of problems) {
      const slot = errors.get(p.input);
      if (slot) {
        slot.err.textContent = p.message;
        slot.input.setAttribute("aria-invalid", "true");
      } else {
        status.textContent += ` ${p.message}`;
      }
    }
  });
  return form;
}

/** A form with one JSON text area, for an answer whose schema is not a plain object. */
export function jsonForm({ submit, onSubmit, formLabel, hint }) {
  return inputsForm([{ name: "value", type: "any", required: true, description: hint }], {
    submit,
    formLabel,
    onSubmit: (v) => onSubmit(v.value),
  });
}
