/* SPDX-License-Identifier: MIT */
/* The device behind one interface: picks the kernel (netlink) or userspace (UAPI) backend
 * for an interface. AUTO asks the kernel first: a kernel WireGuard device answers genl;
 * wireguard-go's TUN device does not, and has a UAPI socket instead. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "prov.h"

int wgdev_open(struct wgdev **out, const char *ifname, enum wgdev_kind kind, const char *uapi_dir)
{
	struct wgdev *d;
	int ret = -EPROTONOSUPPORT;

	if (!ifname || !*ifname || strlen(ifname) >= IF_NAMESIZE)
		return -EINVAL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	strcpy(d->ifname, ifname);
	if (kind == WGDEV_AUTO || kind == WGDEV_NETLINK) {
		ret = wgnl_open(&d->impl, ifname);
		if (ret == 0)
			d->ops = &wgnl_ops;
	}
	if (!d->ops && (kind == WGDEV_UAPI || (kind == WGDEV_AUTO &&
					      (ret == -ENODEV || ret == -EPROTONOSUPPORT ||
					       ret == -EOPNOTSUPP)))) {
		int r = uapi_open(&d->impl, ifname, uapi_dir);

		if (r == 0)
			d->ops = &uapi_ops;
		else if (kind == WGDEV_UAPI || ret == -EPROTONOSUPPORT)
			ret = r;
	}
	if (!d->ops) {
		free(d);
		return ret;
	}
	*out = d;
	return 0;
}

void wgdev_close(struct wgdev *d)
{
	if (!d)
		return;
	d->ops->close(d->impl);
	free(d);
}
