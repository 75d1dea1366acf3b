/* ubi_share_guard: a Mosquitto 2.0 (plugin API v5) ACL plugin that lets only named users subscribe to shared
 * subscriptions ($share/...) and refuses retained
 * publishes outside the topics that may be retained. Every other decision is DEFERred to the acl_file.
 *   plugin /path/ubi_share_guard.so
 *   plugin_opt_share_users bridge            (comma separated)
 *   plugin_opt_retain_suffix /status         (retained PUBLISHes are refused on every other topic)
 *   plugin_opt_max_qos 1                     (PUBLISHes above this QoS are refused)
 * and binds client ids to usernames: a user who is not a share user must connect as client id "dev-<username>"
 * or "<username>" (the device contract), so no device can take over the bridge's session (connecting with the
 * bridge's client id would destroy its queued messages) or another device's.
 * Built by `ubi stack up` (ubi/ops/stack.py) with gcc and the mosquitto-dev headers (deploy/local/install.sh).
 * Why a plugin: Mosquitto 2.0.x's acl_file never checks SUBSCRIBE (it only filters delivery with `read`), so a
 * device could join the bridge's share group and have its share of every vehicle's messages discarded (issue 11). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

static mosquitto_plugin_id_t *plg_id;
static char allowed[1024] = "";
static char retain_suffix[256] = "";
static int max_qos = 2;  /* PUBLISHes above this QoS are refused (2.0.11's own max_qos is only advertised) */  /* retained PUBLISHes only to topics ending so ("" = no restriction) */

static int user_allowed(const char *u)
{
	size_t n;
	const char *p = allowed;
	if(!u) return 0;
	n = strlen(u);
	while(*p){
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if(len == n && !strncmp(p, u, n)) return 1;
		if(!e) break;
		p = e + 1;
	}
	return 0;
}

static int on_acl(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *ed = event_data;
	const char *user = mosquitto_client_username(ed->client);
	(void)event; (void)userdata;
	if((ed->access == MOSQ_ACL_SUBSCRIBE || ed->access == MOSQ_ACL_UNSUBSCRIBE)
			&& !strncmp(ed->topic, "$share/", 7) && !user_allowed(user)){
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "ubi_share_guard: denied %s of '%s' to client '%s' (user '%s')",
				ed->access == MOSQ_ACL_SUBSCRIBE ? "SUBSCRIBE" : "UNSUBSCRIBE", ed->topic,
				mosquitto_client_id(ed->client), user ? user : "");
		return MOSQ_ERR_ACL_DENIED;
	}
	if(ed->access == MOSQ_ACL_WRITE && ed->qos > max_qos){
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "ubi_share_guard: denied QoS %d PUBLISH to '%s' by client '%s'",
				ed->qos, ed->topic, mosquitto_client_id(ed->client));
		return MOSQ_ERR_ACL_DENIED;
	}
	if(ed->access == MOSQ_ACL_WRITE && ed->retain && retain_suffix[0]){
		size_t n = strlen(ed->topic), m = strlen(retain_suffix);
		if(n < m || strcmp(ed->topic + n - m, retain_suffix)){
			mosquitto_log_printf(MOSQ_LOG_NOTICE, "ubi_share_guard: denied retained PUBLISH to '%s' by client '%s'",
					ed->topic, mosquitto_client_id(ed->client));
			return MOSQ_ERR_ACL_DENIED;
		}
	}
	return MOSQ_ERR_PLUGIN_DEFER;
}

static int on_basic_auth(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_basic_auth *ed = event_data;
	const char *id = mosquitto_client_id(ed->client);
	const char *user = ed->username;
	(void)event; (void)userdata;
	if(user && user_allowed(user)) return MOSQ_ERR_PLUGIN_DEFER;
	if(user && id && (!strcmp(id, user) || (!strncmp(id, "dev-", 4) && !strcmp(id + 4, user)))){
		return MOSQ_ERR_PLUGIN_DEFER;  /* the password file decides */
	}
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "ubi_share_guard: refused client id '%s' for user '%s' (devices connect as dev-<vehicle>)",
			id ? id : "", user ? user : "");
	return MOSQ_ERR_AUTH;
}

int mosquitto_plugin_version(int n, const int *v)
{
	int i;
	for(i = 0; i < n; i++) if(v[i] == 5) return 5;
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **user_data, struct mosquitto_opt *opts, int opt_count)
{
	int i;
	(void)user_data;
	plg_id = identifier;
	for(i = 0; i < opt_count; i++){
		if(!strcmp(opts[i].key, "share_users")) snprintf(allowed, sizeof(allowed), "%s", opts[i].value);
		if(!strcmp(opts[i].key, "max_qos")) max_qos = atoi(opts[i].value);
		if(!strcmp(opts[i].key, "retain_suffix")) snprintf(retain_suffix, sizeof(retain_suffix), "%s", opts[i].value);
	}
	if(mosquitto_callback_register(plg_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, NULL)) return MOSQ_ERR_UNKNOWN;
	return mosquitto_callback_register(plg_id, MOSQ_EVT_ACL_CHECK, on_acl, NULL, NULL);
}

int mosquitto_plugin_cleanup(void *user_data, struct mosquitto_opt *opts, int opt_count)
{
	(void)user_data; (void)opts; (void)opt_count;
	mosquitto_callback_unregister(plg_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
	return mosquitto_callback_unregister(plg_id, MOSQ_EVT_ACL_CHECK, on_acl, NULL);
}
