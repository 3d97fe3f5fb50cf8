{{/*
The logic of lnm-operator's renderer (lnm-operator/src/render.rs), in templates: the chart and
`lnm-operator render` render the same objects for the same input (lnm-operator/tests/helm.rs).
*/}}

{{/* aio-lnm-<name><suffix>, at most 63 characters (a long name is cut and given a hash). */}}
{{- define "lnm.objectName" -}}
{{- $name := index . 0 -}}
{{- $suffix := index . 1 -}}
{{- $clean := regexReplaceAll "[^a-z0-9]" (lower $name) "-" | trimAll "-" -}}
{{- $full := printf "aio-lnm-%s%s" $clean $suffix -}}
{{- if le (len $full) 63 -}}
{{- $full -}}
{{- else -}}
{{- $hash := sha256sum $name | trunc 8 -}}
{{- $room := sub (sub (sub 55 (len $suffix)) 8) 1 -}}
{{- $cut := regexReplaceAll "-+$" (trunc (int $room) $clean) "" -}}
{{- printf "aio-lnm-%s-%s%s" $cut $hash $suffix -}}
{{- end -}}
{{- end -}}

{{- define "lnm.name" -}}
{{- .Values.name | default .Release.Name -}}
{{- end -}}

{{- define "lnm.app" -}}
{{- include "lnm.objectName" (list (include "lnm.name" .) "") -}}
{{- end -}}

{{- define "lnm.labels" -}}
app: {{ include "lnm.app" . }}
app.kubernetes.io/instance: {{ include "lnm.app" . }}
app.kubernetes.io/name: lnm-gateway
app.kubernetes.io/part-of: lnm
{{- end -}}

{{/* The container port of a Service port. */}}
{{- define "lnm.containerPort" -}}
{{- $port := int (index . 0) -}}
{{- $ports := index . 1 -}}
{{- if eq $port 443 -}}{{ $ports.tls }}
{{- else if eq $port 80 -}}{{ $ports.http }}
{{- else if lt $port 1024 -}}{{ add $port 8000 }}
{{- else -}}{{ $port }}
{{- end -}}
{{- end -}}

{{- define "lnm.portName" -}}
{{- $port := int . -}}
{{- if eq $port 443 -}}https{{- else if eq $port 80 -}}http{{- else -}}tcp-{{ $port }}{{- end -}}
{{- end -}}

{{/* The listeners of the spec (or the defaults: 443 tls, 80 http, one per internal port), as
YAML: a list of {port, protocol, destinationPort}. */}}
{{- define "lnm.listeners" -}}
{{- $out := list -}}
{{- if hasKey .Values.spec "listeners" -}}
{{- range .Values.spec.listeners -}}
{{- $port := int (regexFind "[0-9]+$" .bind) -}}
{{- $out = append $out (dict "port" $port "protocol" (.protocol | default "auto") "destinationPort" (int (.destinationPort | default $port))) -}}
{{- end -}}
{{- else -}}
{{- $out = list (dict "port" 443 "protocol" "tls" "destinationPort" 443) (dict "port" 80 "protocol" "http" "destinationPort" 80) -}}
{{- $seen := list 443 80 -}}
{{- range ((.Values.spec.allowList | default dict).domains | default list) -}}
{{- if eq .destinationType "internal" -}}
{{- $port := int (regexFind "[0-9]+$" .destinationUrl) -}}
{{- if not (has $port $seen) -}}
{{- $seen = append $seen $port -}}
{{- $out = append $out (dict "port" $port "protocol" "auto" "destinationPort" $port) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toYaml (dict "listeners" $out) -}}
{{- end -}}

{{/* The configuration the pod runs: the spec, with the pod's listeners, DNS and admin ports. */}}
{{- define "lnm.podConfig" -}}
{{- $spec := deepCopy .Values.spec -}}
{{- range list "image" "replicas" "nodeTolerations" -}}
{{- $_ := unset $spec . -}}
{{- end -}}
{{- $listeners := list -}}
{{- range (include "lnm.listeners" . | fromYaml).listeners -}}
{{- $inside := include "lnm.containerPort" (list .port $.Values.ports) -}}
{{- $listeners = append $listeners (dict "bind" (printf "0.0.0.0:%s" $inside) "protocol" .protocol "destinationPort" (int .destinationPort)) -}}
{{- end -}}
{{- $_ := set $spec "listeners" $listeners -}}
{{- if hasKey $spec "dns" -}}
{{- $dns := $spec.dns -}}
{{- $_ := set $dns "bind" (printf "0.0.0.0:%v" $.Values.ports.dns) -}}
{{- with $.Values.service.address -}}
{{- if contains ":" . -}}
{{- $_ := set $dns "answerIpv6" (list .) -}}
{{- else -}}
{{- $_ := set $dns "answerIpv4" (list .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $_ := set $spec "admin" (dict "bind" (printf "0.0.0.0:%v" .Values.ports.admin)) -}}
{{- toYaml $spec -}}
{{- end -}}

{{/* A duration of the configuration in whole seconds, rounded down (forms 30s, 5m, 1h, 500ms),
from (list text). */}}
{{- define "lnm.seconds" -}}
{{- $text := index . 0 | toString -}}
{{- $n := int (regexFind "^[0-9]+" $text) -}}
{{- $unit := regexReplaceAll "^[0-9]+" $text "" -}}
{{- if eq $unit "ms" -}}{{ div $n 1000 }}
{{- else if eq $unit "m" -}}{{ mul $n 60 }}
{{- else if eq $unit "h" -}}{{ mul $n 3600 }}
{{- else -}}{{ $n }}
{{- end -}}
{{- end -}}

{{/* timeouts.shutdownDrain in whole seconds (default 30). */}}
{{- define "lnm.drainSeconds" -}}
{{- include "lnm.seconds" (list ((.Values.spec.timeouts | default dict).shutdownDrain | default "30s")) -}}
{{- end -}}

{{/* The last metrics push after the drain: metricsExport.timeout (default 5s) plus one second
when openTelemetryMetricsCollectorAddr is set, else 0. */}}
{{- define "lnm.lastPushSeconds" -}}
{{- if .Values.spec.openTelemetryMetricsCollectorAddr -}}
{{- add (include "lnm.seconds" (list ((.Values.spec.metricsExport | default dict).timeout | default "5s")) | int) 1 -}}
{{- else -}}0
{{- end -}}
{{- end -}}

{{/* The allowlist's unique patterns, sorted as lnm sorts them (exact names, then wildcards),
as YAML {patterns: [{display, zone, regex}]}. */}}
{{- define "lnm.patterns" -}}
{{- $keys := list -}}
{{- $allow := .Values.spec.allowList | default dict -}}
{{- if $allow.enableArcDomains -}}
{{- range splitList "\n" (.Files.Get "files/arc-domains.txt" | trim) -}}
{{- $keys = append $keys . -}}
{{- end -}}
{{- end -}}
{{- range ($allow.domains | default list) -}}
{{- $url := .destinationUrl -}}
{{- if eq .destinationType "internal" -}}{{- $url = regexReplaceAll ":[0-9]+$" $url "" -}}{{- end -}}
{{- $keys = append $keys $url -}}
{{- end -}}
{{- $sorted := list -}}
{{- range $keys -}}
{{- $name := lower . | trimSuffix "." -}}
{{- if hasPrefix "*." $name -}}
{{- $sorted = append $sorted (printf "1|%s" (trimPrefix "*." $name)) -}}
{{- else -}}
{{- $sorted = append $sorted (printf "0|%s" $name) -}}
{{- end -}}
{{- end -}}
{{- $out := list -}}
{{- range (sortAlpha $sorted | uniq) -}}
{{- $zone := substr 2 (len .) . -}}
{{- $escaped := replace "." "\\." $zone -}}
{{- if hasPrefix "1|" . -}}
{{- $out = append $out (dict "display" (printf "*.%s" $zone) "zone" $zone "regex" (printf "^([a-z0-9_-]+\\.)+%s\\.$" $escaped)) -}}
{{- else -}}
{{- $out = append $out (dict "display" $zone "zone" $zone "regex" (printf "^%s\\.$" $escaped)) -}}
{{- end -}}
{{- end -}}
{{- toYaml (dict "patterns" $out) -}}
{{- end -}}

{{/* The answers of the child's CoreDNS: {v4: [..], v6: [..], ttl}. */}}
{{- define "lnm.answers" -}}
{{- $dns := .Values.spec.dns | default dict -}}
{{- $v4 := $dns.answerIpv4 | default list -}}
{{- $v6 := $dns.answerIpv6 | default list -}}
{{- with .Values.service.address -}}
{{- if contains ":" . -}}
{{- $v4 = list -}}{{- $v6 = list . -}}
{{- else -}}
{{- $v4 = list . -}}{{- $v6 = list -}}
{{- end -}}
{{- end -}}
{{- toYaml (dict "v4" $v4 "v6" $v6 "ttl" (int ($dns.ttl | default 60))) -}}
{{- end -}}

{{/* The `template` blocks of lnm_dns::export::corefile (callers indent them). */}}
{{- define "lnm.coreTemplates" -}}
{{- $ctx := . -}}
{{- $answers := include "lnm.answers" $ctx | fromYaml -}}
{{- range (include "lnm.patterns" $ctx | fromYaml).patterns }}
# {{ .display }}
{{- $p := . -}}
{{- range $answers.v4 }}
template IN A {{ $p.zone }} {
    match "{{ $p.regex }}"
    answer "{{ "{{ .Name }}" }} {{ $answers.ttl }} IN A {{ . }}"
}
{{- end -}}
{{- range $answers.v6 }}
template IN AAAA {{ $p.zone }} {
    match "{{ $p.regex }}"
    answer "{{ "{{ .Name }}" }} {{ $answers.ttl }} IN AAAA {{ . }}"
}
{{- end }}
template ANY ANY {{ .zone }} {
    match "{{ .regex }}"
    rcode NOERROR
}
{{- end -}}
{{- end -}}
